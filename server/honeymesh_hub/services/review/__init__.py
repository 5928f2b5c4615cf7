"""The reviewer API (PROTOCOL.md section 7): the queue, one candidate, leases, decisions.

The use cases; the rules are in `rules.py`, the queue tokens in `after.py`, the JSON
views in `views.py`.

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

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from honeymesh_client.protocol.tlogleaf import log_of_scope

from ...addresses import is_broad
from ...clock import rfc3339
from ...entitlements import effective_limits
from ...errors import Conflict, NotFound
from ...lifecycle import FIRST_APPROVAL, REVIEW_MOVES, REVIEW_TRIGGERS, Move, Trigger
from ...lifecycle import move as lifecycle_move
from ...ratelimit import Limit, RateLimiter, per_day
from ...store import allowlist as allowlist_store
from ...store import audit
from ...store import review as review_store
from ...store.review import QueueQuery
from .. import decisions, tlog
from .after import REPORTERS_MAX, decode_after, encode_after
from .rules import (
    BROAD_APPROVALS,
    ORDERS,
    SETTLED,
    STATES,
    Reviewer,
    Standing,
    Verdict,
    _refused,
    approvals_needed,
    judge,
)
from .views import candidate_view, decision_view, signal_view

__all__ = [
    "BROAD_APPROVALS",
    "ORDERS",
    "REPORTERS_MAX",
    "REVIEW_MOVES",
    "SETTLED",
    "STATES",
    "DecisionRequest",
    "QueueQuery",
    "Reviewer",
    "Standing",
    "Verdict",
    "approvals_needed",
    "claim",
    "decide",
    "decode_after",
    "encode_after",
    "judge",
    "queue",
    "show",
    "stats",
]

log = logging.getLogger("honeymesh.review")
# The signals a candidate's view carries: the newest, with `signal_count` the total.
SIGNALS_SHOWN = 500
_RETRIES = 3


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
    log = log_of_scope(reviewer.scope_key)
    async with pool.acquire() as conn:
        found = await review_store.stats(conn, reviewer.scope_key, since)
        tenants, nodes = await review_store.cap_subjects(conn, reviewer.scope_key, since)
        log_size = (await tlog.sizes(conn, [log])).get(log, 0)
        cosigned_size, lines = await tlog.latest_cosigned(conn, log, 16)
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
        # The scope's transparency log (PROTOCOL.md 15 r2): its size, and who cosigned
        # its latest cosigned checkpoint (signed-note key names, node-<node_id>).
        "transparency": {
            "log": log,
            "size": log_size,
            "cosigned_size": cosigned_size,
            "cosigners": sorted(_signer(line) for line in lines),
        },
    }


def _signer(line: str) -> str:
    """The key name of a signed-note signature line (`— name base64`)."""
    return line.removeprefix("\u2014 ").split(" ", 1)[0]
