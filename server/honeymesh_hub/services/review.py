"""The reviewer API (PROTOCOL.md section 7): the queue, one candidate, leases, decisions.

Scope: a `mesh` reviewer token sees mesh-scope candidates only, a tenant reviewer
token only its tenant's tenant-scope ones; every query filters by the reviewer's
`scope_key`, so anything else is exactly a missing candidate (404 `not_found`, or
`refused` with `not_found` in a batch of decisions).

A reviewer's decisions are rows of the lifecycle table (lifecycle.REVIEW_MOVES);
anything else on a candidate is refused with `conflict`, and the decision that already
holds is `unchanged`:

    approve   pending | rejected | expired | retracted -> approved (origin review)
    reject    pending                                   -> rejected (reviewer lock)
    retract   approved                                  -> retracted (reviewer lock)

A range broader than IPv4 /24 or IPv6 /48 needs approvals from two reviewer tokens of
different names: the first is a `first_approval` decision that changes no state; the
same name again is `unchanged`; another name approves. First approvals count from
the candidate's latest state change (a reject or a reopen starts the count again).

Leases belong to a token (its id); the two-reviewer rule is about names. While a lease
runs, another token's claim is 409 and its decisions are `refused` with `conflict`.
A decision that changes a candidate ends the lease on it.

Every state change, first approval and claim is audited in the transaction that makes
it; state changes are lifecycle moves written by `decisions.write`, with
their decision rows and feed events. A batch costs a fixed number of statements at 1
or 500 decisions: one to lock every named candidate, at most one to read first
approvals, one to apply the moves, one to end leases.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from .. import views
from ..addresses import is_broad
from ..callers import TokenCaller
from ..clock import rfc3339
from ..entitlements import effective_limits
from ..errors import Conflict, NotFound
from ..lifecycle import REVIEW_MOVES, REVIEW_TRIGGERS, Move, Trigger
from ..lifecycle import move as lifecycle_move
from ..ratelimit import Limit, RateLimiter, per_day
from ..store import allowlist as allowlist_store
from ..store import audit
from ..store import review as review_store
from ..store.review import FIRST_APPROVAL, QueueQuery
from . import decisions

log = logging.getLogger("honeymesh.review")

STATES = ("pending", "approved", "rejected", "expired", "retracted")
ORDERS = ("reporters", "oldest")
BROAD_APPROVALS = 2
# The signals a candidate's view carries: the newest, with `signal_count` the total.
SIGNALS_SHOWN = 500
_RETRIES = 3

# The state each action leaves: deciding it again is `unchanged`.
SETTLED: dict[str, str] = {"approve": "approved", "reject": "rejected", "retract": "retracted"}


# -- pure: who reviews, what a decision does, cursors ------------------------------


@dataclass(frozen=True, slots=True)
class Reviewer:
    token_id: uuid.UUID
    name: str
    actor: str
    scope_key: str  # 'mesh' or the tenant id: the candidates this token may see

    @classmethod
    def of(cls, caller: TokenCaller) -> Reviewer:
        if caller.scope == "mesh":
            scope_key = "mesh"
        elif caller.scope == "tenant" and caller.scope_tenant_id is not None:
            scope_key = str(caller.scope_tenant_id)
        else:  # a reviewer token always has a scope; fail closed if one does not
            raise NotFound("No such candidate.")
        return cls(caller.token_id, caller.name, caller.actor, scope_key)


@dataclass(frozen=True, slots=True)
class Standing:
    """A candidate as a decision finds it."""

    state: str
    broad: bool
    lease_holder: uuid.UUID | None  # the token whose lease runs now, if any
    lease_holder_name: str | None
    approvers: tuple[str, ...]  # actors of first approvals since the latest state change
    allowlisted: bool = False  # overlaps an allowlisted range, read under the lock


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # applied | unchanged | refused
    state: str | None  # the candidate's state after it; None when refused
    move: str | None = None  # approve | reject | retract | first_approval, when applied
    code: str | None = None
    detail: str | None = None


def _refused(code: str, detail: str) -> Verdict:
    return Verdict("refused", None, code=code, detail=detail)


def judge(action: str, standing: Standing, reviewer: Reviewer) -> Verdict:
    """What `reviewer`'s `action` does to a candidate standing so. Pure."""
    if standing.lease_holder is not None and standing.lease_holder != reviewer.token_id:
        return _refused(
            "conflict",
            f"Reviewer {standing.lease_holder_name} holds this candidate's lease.",
        )
    if SETTLED[action] == standing.state:
        return Verdict("unchanged", standing.state)
    if action == "approve" and standing.allowlisted:
        # The allowlist always wins, over reviewers too (PROTOCOL.md 7 r2).
        return _refused("conflict", "This candidate overlaps an allowlisted range.")
    target = REVIEW_MOVES.get((action, standing.state))
    if target is None:
        return _refused("conflict", f"A {standing.state} candidate cannot take {action}.")
    if action == "approve" and standing.broad:
        if reviewer.actor in standing.approvers:
            return Verdict("unchanged", standing.state)
        if len(set(standing.approvers)) + 1 < BROAD_APPROVALS:
            return Verdict("applied", standing.state, move=FIRST_APPROVAL)
    return Verdict("applied", target, move=action)


def approvals_needed(state: str, broad: bool, approvers: Sequence[str]) -> int:
    if state == "approved":
        return 0
    return max(0, (BROAD_APPROVALS if broad else 1) - len(set(approvers)))


_CURSOR_TAGS = {"reporters": b"r", "oldest": b"o"}
_CURSOR_BYTES = 1 + 8 + 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REPORTERS_MAX = 2**31 - 1  # candidates.reporters is a PostgreSQL integer (int4)


def encode_after(order: str, key: int | datetime, candidate_id: uuid.UUID) -> str:
    """The `next` token: the order, the last row's sort key and its id; URL-safe."""
    number = (key - _EPOCH) // timedelta(microseconds=1) if isinstance(key, datetime) else key
    raw = _CURSOR_TAGS[order] + struct.pack(">q", number) + candidate_id.bytes
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_after(order: str, token: str) -> tuple[int | datetime, uuid.UUID]:
    """The inverse of `encode_after` for this order; ValueError (saying why) for anything
    else, a sort key no candidate can have included, so no query sees it."""
    if not token.isascii() or len(token) != 34:
        raise ValueError("not a cursor of this queue")
    try:
        raw = base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError):
        raise ValueError("not a cursor of this queue") from None
    if (
        len(raw) != _CURSOR_BYTES
        or raw[:1] != _CURSOR_TAGS[order]
        or base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token
    ):
        raise ValueError("not a cursor of this queue (or of another order)")
    (number,) = struct.unpack(">q", raw[1:9])
    candidate_id = uuid.UUID(bytes=raw[9:])
    if order == "oldest":
        try:
            return _EPOCH + timedelta(microseconds=number), candidate_id
        except OverflowError:
            raise ValueError("its time is outside years 1 to 9999") from None
    if not 0 <= number <= REPORTERS_MAX:
        raise ValueError(f"its reporter count is outside 0..{REPORTERS_MAX}")
    return number, candidate_id


# -- views ---------------------------------------------------------------------------


def _reviewer_name(actor: str) -> str:
    return actor.removeprefix("reviewer:")


def candidate_view(
    row: Any, now: datetime, approvals: Sequence[tuple[str, datetime]]
) -> dict[str, Any]:
    lease_runs = row["lease_expires_at"] is not None and row["lease_expires_at"] > now
    broad = is_broad(row["network"])
    view = views.candidate_head(row)
    view.update(
        state=row["state"],
        scenarios=list(row["scenarios"]),
        reporters=row["reporters"],
        tenants=row["tenants"],
        signal_count=row["signal_count"],
        max_confidence=row["max_confidence"],
        first_seen=rfc3339(row["first_seen"]),
        last_seen=rfc3339(row["last_seen"]),
        expires_at=rfc3339(row["expires_at"]),
        origin=row["origin"],
        claimed_by=row["claimed_by_name"] if lease_runs else None,
        lease_expires_at=rfc3339(row["lease_expires_at"]) if lease_runs else None,
        broad=broad,
        approvals=[{"reviewer": _reviewer_name(a), "time": rfc3339(t)} for a, t in approvals],
        approvals_needed=approvals_needed(row["state"], broad, [a for a, _ in approvals]),
    )
    return view


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signal_view(row: Any) -> dict[str, Any]:
    """A signal as its publisher sent it: the stored payload bytes and signature."""
    return {
        "signal_id": str(row["signal_uuid"]),
        "node_id": str(row["node_id"]),
        "tenant_id": str(row["tenant_id"]),
        "received_at": rfc3339(row["received_at"]),
        "keyid": row["keyid"],
        "public_key": _b64(bytes(row["public_key"])),
        "envelope": views.envelope(bytes(row["payload"]), bytes(row["sig"]), row["keyid"]),
    }


def decision_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "action": row["action"],
        "from_state": row["from_state"],
        "to_state": row["to_state"],
        "origin": row["origin"],
        "actor": row["actor"],
        "reason": row["reason"],
        "time": rfc3339(row["time"]),
    }


def _broad_unsettled(rows: Sequence[Any]) -> list[uuid.UUID]:
    """Candidates whose view or decision needs the first approvals read."""
    return [r["candidate_id"] for r in rows if r["state"] != "approved" and is_broad(r["network"])]


# -- use cases -----------------------------------------------------------------------


async def queue(pool: Any, query: QueueQuery, now: datetime) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await review_store.queue_page(
            conn, dataclasses.replace(query, limit=query.limit + 1)
        )
        page = rows[: query.limit]
        broad = _broad_unsettled(page)
        approvals = await review_store.pending_approvals(conn, broad) if broad else {}
    out: dict[str, Any] = {
        "candidates": [candidate_view(r, now, approvals.get(r["candidate_id"], [])) for r in page]
    }
    if len(rows) > query.limit:
        last = page[-1]
        key = last["reporters"] if query.order == "reporters" else last["first_seen"]
        out["next"] = encode_after(query.order, key, last["candidate_id"])
    return out


async def show(
    pool: Any, reviewer: Reviewer, candidate_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        row = await review_store.get(conn, candidate_id, reviewer.scope_key)
        if row is None:
            raise NotFound("No such candidate.")
        broad = _broad_unsettled([row])
        approvals = await review_store.pending_approvals(conn, broad) if broad else {}
        signals = await review_store.signals_of(
            conn, row["indicator_value"], row["scope_key"], SIGNALS_SHOWN
        )
        history = await review_store.history(conn, candidate_id)
    view = candidate_view(row, now, approvals.get(candidate_id, []))
    view["signals"] = [signal_view(s) for s in signals]
    view["decisions"] = [decision_view(d) for d in history]
    return view


async def claim(
    pool: Any, reviewer: Reviewer, candidate_id: uuid.UUID, lease_seconds: int, now: datetime
) -> dict[str, Any]:
    until = now + timedelta(seconds=lease_seconds)
    async with pool.acquire() as conn, conn.transaction():
        row = await review_store.claim(
            conn,
            candidate_id,
            reviewer.scope_key,
            token_id=reviewer.token_id,
            name=reviewer.name,
            now=now,
            until=until,
        )
        if row is None:
            held = await review_store.get(conn, candidate_id, reviewer.scope_key)
            if held is None:
                raise NotFound("No such candidate.")
            raise Conflict(
                f"Reviewer {held['claimed_by_name']} holds this candidate's lease until"
                f" {rfc3339(held['lease_expires_at'])}."
            )
        await audit.append(
            conn,
            now=now,
            actor=reviewer.actor,
            action="candidate.claim",
            target=f"candidate:{candidate_id}",
            details={"lease_seconds": lease_seconds, "lease_expires_at": rfc3339(until)},
        )
        broad = _broad_unsettled([row])
        approvals = await review_store.pending_approvals(conn, broad) if broad else {}
    # The candidate as it stands, led by `candidate_id` (the Claim shape of openapi.yaml).
    return {
        "candidate_id": str(candidate_id),
        **candidate_view(row, now, approvals.get(candidate_id, [])),
    }


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    candidate_id: uuid.UUID
    action: str  # approve | reject | retract
    reason: str
    ttl_seconds: int | None = None


def _standing(row: Any, now: datetime, approvers: Sequence[str], allowlisted: bool) -> Standing:
    lease_runs = row["lease_expires_at"] is not None and row["lease_expires_at"] > now
    return Standing(
        state=row["state"],
        broad=is_broad(row["network"]),
        lease_holder=row["claimed_by"] if lease_runs else None,
        lease_holder_name=row["claimed_by_name"] if lease_runs else None,
        approvers=tuple(approvers),
        allowlisted=allowlisted,
    )


def _move(row: Any, verdict: Verdict, item: DecisionRequest, now: datetime) -> Move:
    """The lifecycle move a reviewer's applied decision takes."""
    if verdict.move == FIRST_APPROVAL:
        return lifecycle_move(Trigger.FIRST_APPROVAL, row["state"], reason=item.reason)
    trigger = REVIEW_TRIGGERS[item.action]
    if trigger is not Trigger.APPROVE:
        return lifecycle_move(trigger, row["state"], reason=item.reason)
    ttl = item.ttl_seconds if item.ttl_seconds is not None else row["max_ttl_seconds"]
    expires_at = now + timedelta(seconds=ttl)
    # A reviewer's own ttl_seconds also caps later extensions by new signals.
    cap = expires_at if item.ttl_seconds is not None else None
    return lifecycle_move(
        trigger, row["state"], expires_at=expires_at, expiry_cap=cap, reason=item.reason
    )


def _result(candidate_id: uuid.UUID, verdict: Verdict) -> dict[str, Any]:
    out: dict[str, Any] = {"candidate_id": str(candidate_id), "status": verdict.status}
    if verdict.status == "refused":
        out["error"] = {"code": verdict.code, "detail": verdict.detail}
    else:
        out["state"] = verdict.state
    return out


async def _decide_locked(
    conn: Any, reviewer: Reviewer, items: Sequence[DecisionRequest], now: datetime
) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys(item.candidate_id for item in items))
    rows = {
        r["candidate_id"]: r
        for r in await review_store.lock_for_decisions(conn, ids, reviewer.scope_key)
    }
    broad = _broad_unsettled(list(rows.values()))
    approvals = await review_store.pending_approvals(conn, broad) if broad else {}
    approving = [i.candidate_id for i in items if i.action == "approve" and i.candidate_id in rows]
    covered = await allowlist_store.covers(conn, approving) if approving else set()
    standing = {
        cid: _standing(row, now, [a for a, _ in approvals.get(cid, [])], cid in covered)
        for cid, row in rows.items()
    }
    changed: set[uuid.UUID] = set()
    taken: list[decisions.Taken] = []
    results: list[dict[str, Any]] = []
    for item in items:
        cid = item.candidate_id
        row = rows.get(cid)
        if row is None:
            results.append(_result(cid, _refused("not_found", "No such candidate.")))
            continue
        now_standing = standing[cid]
        verdict = judge(item.action, now_standing, reviewer)
        if verdict.status == "applied" and cid in changed:
            # One change per candidate per request keeps each decision one whole move.
            verdict = _refused(
                "conflict", "This request already changed this candidate; send it again."
            )
        if verdict.status == "applied":
            taken.append(decisions.Taken(row, _move(row, verdict, item, now), reviewer.actor))
            changed.add(cid)
            assert verdict.state is not None
            approvers = now_standing.approvers
            if verdict.move == FIRST_APPROVAL:
                approvers = (*approvers, reviewer.actor)
            standing[cid] = dataclasses.replace(
                now_standing, state=verdict.state, approvers=approvers
            )
        results.append(_result(cid, verdict))
    await decisions.write(conn, taken, now)
    if changed:
        await review_store.release_leases(conn, sorted(changed))
    return results


async def decide(
    pool: Any, reviewer: Reviewer, items: Sequence[DecisionRequest], now: datetime
) -> list[dict[str, Any]]:
    """Apply a batch of decisions in one transaction; each has its own outcome."""
    async with pool.acquire() as conn:
        for attempt in range(_RETRIES):
            try:
                async with conn.transaction():
                    return await _decide_locked(conn, reviewer, items, now)
            except asyncpg.DeadlockDetectedError:
                if attempt == _RETRIES - 1:
                    raise
                log.warning("review decisions deadlock; retrying")
    raise AssertionError("unreachable")


async def stats(
    pool: Any, limiter: RateLimiter, reviewer: Reviewer, now: datetime
) -> dict[str, Any]:
    """The console's status strip: queue depth by state, approvals in the last 24 h by
    origin, rule-made approvals deferred by the daily caps, and how much of each daily
    cap (auto approvals per tenant, trusted approvals per trusted node) is spent, read
    from the very windows publishing charges, all in this reviewer's scope."""
    since = now - timedelta(days=1)
    async with pool.acquire() as conn:
        found = await review_store.stats(conn, reviewer.scope_key, since)
        tenants, nodes = await review_store.cap_subjects(conn, reviewer.scope_key, since)
    states = {s: 0 for s in STATES}
    states.update(found["states"])
    auto_caps = []
    for t in tenants:
        cap = effective_limits(t["plan"], t["limits"])["auto_approvals_per_day"]
        limit = Limit(per_day(cap), str(t["tenant_id"]))
        used = await limiter.used("auto_approvals", limit)
        auto_caps.append({"tenant_id": str(t["tenant_id"]), "used": used, "limit": cap})
    trusted_caps = []
    for n in nodes:
        cap = effective_limits(n["plan"], n["limits"])["trusted_approvals_per_day"]
        limit = Limit(per_day(cap), str(n["node_id"]))
        used = await limiter.used("trusted_approvals", limit)
        trusted_caps.append(
            {
                "node_id": str(n["node_id"]),
                "tenant_id": str(n["tenant_id"]),
                "used": used,
                "limit": cap,
            }
        )
    return {
        "scope": "mesh" if reviewer.scope_key == "mesh" else "tenant",
        "states": states,
        "approvals_24h": {
            "review": found["reviewed"],
            "auto": found["auto"],
            "trusted": found["trusted"],
        },
        "deferred_by_caps_24h": found["deferred"],
        "auto_approval_caps": auto_caps,
        "trusted_approval_caps": trusted_caps,
    }
