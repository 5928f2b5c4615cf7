"""Publishing (PROTOCOL.md sections 6 and 7): verify, validate, store, decide, commit.

A bad envelope is refused alone, by the first check that fails, in the protocol's
order: validation_failed (envelope), foreign_key, invalid_envelope_signature,
duplicate, validation_failed (payload), too_broad, reserved_range, rate_limited.
Everything accepted is committed before the 202 leaves, in two steps. The signals and
their candidates' counts commit in one statement of their own: for most publishes
nothing moves, so that is the whole cost. The moves the lifecycle wants (approvals,
reopens, extensions) follow in a second, short transaction on the candidates' locked,
current rows, with their decisions, audit entries and feed events: it reads
corroboration after our own commit, so it never misses a concurrent publish, and a
hub dying between the two loses nothing, since a re-send (a duplicate) plans again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from honeymesh_client.protocol import dsse, ijson
from honeymesh_client.protocol.errors import ProtocolError
from honeymesh_client.protocol.keys import is_keyid

from ..addresses import is_broad
from ..callers import NodeCaller
from ..config import PolicyConfig
from ..entitlements import effective_limits
from ..keydirectory import KeyDirectory
from ..lifecycle import (
    CandidateFacts,
    Corroboration,
    Move,
    capped,
    plan_publish,
    wants_corroboration,
)
from ..metrics import Metrics
from ..ratelimit import Limit, RateLimiter, per_day
from ..store import signals as signal_store
from ..store.signals import SignalRow
from ..validation import Refusal, Signal, validate_signal
from . import decisions

log = logging.getLogger("honeymesh.publish")

_RETRIES = 3
NEW_CANDIDATES = "new_candidates"


@dataclass(slots=True)
class PublishContext:
    pool: Any
    directory: KeyDirectory
    limiter: RateLimiter
    metrics: Metrics
    policy: PolicyConfig
    now: datetime


@dataclass(slots=True)
class _Pending:
    """Accepted so far: awaiting the store's verdict (stored or duplicate)."""

    index: int
    row: SignalRow


@dataclass(slots=True)
class _Batch:
    results: list[dict[str, Any] | None]
    pending: list[_Pending] = field(default_factory=list)
    refused_payloads: list[tuple[int, Refusal, uuid.UUID | None]] = field(default_factory=list)


def _refusal(signal_id: str | None, code: str, detail: str, pointer: str) -> dict[str, Any]:
    """A refused envelope's result; every refusal points at what it refuses."""
    error = {"code": code, "detail": detail, "pointer": pointer}
    return {"id": signal_id, "status": "rejected", "error": error}


def _payload_id(payload: bytes) -> uuid.UUID | None:
    """The id a refused payload claims, to tell a retry (duplicate) from a bad signal."""
    try:
        obj = ijson.loads(payload)
        return uuid.UUID(obj["id"]) if isinstance(obj, dict) else None
    except (ProtocolError, KeyError, TypeError, ValueError, AttributeError):
        return None


async def _usable_key(ctx: PublishContext, caller: NodeCaller, keyid: str) -> bytes | None:
    """The caller's key with this id, current or in its grace period (else foreign).

    A keyid that is not 64 lowercase hex is foreign without any lookup (PROTOCOL.md 6
    r2): nothing a sender makes up reaches the key directory or its cache.
    """
    if keyid == caller.keyid:
        return caller.identity.public_key
    if not is_keyid(keyid):
        return None
    found = await ctx.directory.get(keyid)
    if found is None or found.node_id != caller.node_id or not found.key_usable(ctx.now):
        return None
    return found.public_key


def _row(signal: Signal, caller: NodeCaller, keyid: str, payload: bytes, sig: bytes) -> SignalRow:
    mesh = signal.share == "mesh"
    tenant_id = caller.tenant_id
    return SignalRow(
        signal_uuid=signal.id,
        keyid=keyid,
        indicator_type=signal.indicator.type,
        indicator_value=signal.indicator.value,
        network=signal.indicator.network,
        scope="mesh" if mesh else "tenant",
        scope_tenant_id=None if mesh else tenant_id,
        scope_key="mesh" if mesh else str(tenant_id),
        payload=payload,
        sig=sig,
        scenario=signal.scenario,
        confidence=signal.confidence,
        ttl_seconds=signal.ttl_seconds,
        observed_at=signal.observed_at,
    )


async def _check_envelopes(
    ctx: PublishContext, caller: NodeCaller, envelopes: Sequence[Any]
) -> _Batch:
    batch = _Batch(results=[None] * len(envelopes))
    seen: set[uuid.UUID] = set()
    for i, obj in enumerate(envelopes):
        at = f"/envelopes/{i}"
        try:
            env = dsse.parse_envelope(obj)
        except ProtocolError as exc:
            batch.results[i] = _refusal(None, exc.code, exc.detail, at + (exc.pointer or ""))
            continue
        public_key = await _usable_key(ctx, caller, env.keyid)
        if public_key is None:
            batch.results[i] = _refusal(
                None,
                "foreign_key",
                "The keyid is not a current key of the publishing node.",
                at + "/signatures/0/keyid",
            )
            continue
        try:
            payload = dsse.verify_envelope(env, public_key)
        except ProtocolError as exc:
            batch.results[i] = _refusal(None, exc.code, exc.detail, at + "/signatures/0/sig")
            continue
        outcome = validate_signal(payload, caller_node_id=caller.node_id, now=ctx.now)
        if isinstance(outcome, Refusal):
            batch.refused_payloads.append((i, outcome, _payload_id(payload)))
            continue
        if outcome.id in seen:
            batch.results[i] = {"id": str(outcome.id), "status": "duplicate"}
            continue
        seen.add(outcome.id)
        batch.pending.append(_Pending(i, _row(outcome, caller, env.keyid, payload, env.sig)))
    return batch


async def _refuse_payloads(conn: Any, caller: NodeCaller, batch: _Batch) -> None:
    """Refused payloads whose (node, id) is already stored answer `duplicate` (it comes
    first in the protocol's order); the rest keep their refusal."""
    claimed = [pid for _, _, pid in batch.refused_payloads if pid is not None]
    stored = await signal_store.stored_ids(conn, caller.node_id, claimed) if claimed else set()
    for i, refusal, pid in batch.refused_payloads:
        if pid is not None and pid in stored:
            batch.results[i] = {"id": str(pid), "status": "duplicate"}
        else:
            batch.results[i] = _refusal(
                str(pid) if pid else None,
                refusal.code,
                refusal.detail,
                f"/envelopes/{i}/payload{refusal.pointer}",
            )


def new_candidates_limit(caller: NodeCaller) -> Limit:
    """The tenant's `new_candidates_per_day` window (PROTOCOL.md section 4)."""
    allowed = caller.identity.tenant.limits["new_candidates_per_day"]
    return Limit(per_day(allowed), str(caller.tenant_id))


async def _limit_new_candidates(
    ctx: PublishContext, conn: Any, caller: NodeCaller, batch: _Batch, budget: int
) -> bool:
    """Past `new_candidates_per_day`, an envelope that would open a new candidate is
    refused alone with `rate_limited` (PROTOCOL.md section 4).

    While the budget (read in the request's admission, less this process's uncharged
    openings) covers every key of the batch, nothing can be refused: the batch goes
    on and is charged afterwards by what it opened (returns False). Near the cap, the
    exact path finds which keys are new and charges them first (returns True).
    """
    if not batch.pending:
        return True
    keys = list(dict.fromkeys((p.row.indicator_value, p.row.scope_key) for p in batch.pending))
    limit = new_candidates_limit(caller)
    if budget - ctx.limiter.deferred(NEW_CANDIDATES, limit) >= len(keys):
        return False
    await ctx.limiter.flush()  # this process's earlier openings count first
    existing = await signal_store.existing_keys(conn, keys)
    new = [k for k in keys if k not in existing]
    if not new:
        return True
    granted = await ctx.limiter.take(NEW_CANDIDATES, limit, len(new))
    refused = set(new[granted:])
    if not refused:
        return True
    kept: list[_Pending] = []
    for p in batch.pending:
        if (p.row.indicator_value, p.row.scope_key) in refused:
            batch.results[p.index] = _refusal(
                str(p.row.signal_uuid),
                "rate_limited",
                "The tenant's new_candidates_per_day is spent; this signal would open a new"
                " candidate.",
                f"/envelopes/{p.index}/payload/indicator",
            )
        else:
            kept.append(p)
    batch.pending = kept
    return True


@dataclass(frozen=True, slots=True)
class _BatchStats:
    """What this publish says of one candidate: its longest TTL and strongest signal."""

    max_ttl: int
    max_confidence: int


def _batch_stats(rows: Sequence[SignalRow]) -> dict[tuple[str, str], _BatchStats]:
    stats: dict[tuple[str, str], _BatchStats] = {}
    for r in rows:
        key = (r.indicator_value, r.scope_key)
        seen = stats.get(key)
        stats[key] = _BatchStats(
            max(r.ttl_seconds, seen.max_ttl if seen else 0),
            max(r.confidence, seen.max_confidence if seen else 0),
        )
    return stats


def _facts(row: Any, caller: NodeCaller, batch: _BatchStats) -> CandidateFacts:
    return CandidateFacts(
        state=row["state"],
        origin=row["origin"],
        reviewer_locked=row["reviewer_locked"],
        broad=is_broad(row["network"]),
        allowlisted=row["allowlisted"],
        expires_at=row["expires_at"],
        expiry_cap=row["expiry_cap"],
        decided_at=row["decided_at"],
        max_ttl_seconds=row["max_ttl_seconds"],
        reporters=row["reporters"],
        tenants=row["tenants"],
        batch_max_ttl=batch.max_ttl,
        batch_max_confidence=batch.max_confidence,
        caller_trusted=caller.identity.trusted,
    )


async def _within_caps(
    ctx: PublishContext, conn: Any, caller: NodeCaller, move: Move, tenant_ids: list[uuid.UUID]
) -> bool:
    """Charge the daily cap a rule-made approval spends; False when one is spent."""
    if move.effects.cap == "trusted_approvals":
        cap = caller.identity.tenant.limits["trusted_approvals_per_day"]
        limits = [Limit(per_day(cap), str(caller.node_id))]
        policy = "trusted_approvals"
    else:
        rows = await signal_store.tenant_limits(conn, tenant_ids)
        limits = [
            Limit(
                per_day(effective_limits(r["plan"], r["limits"])["auto_approvals_per_day"]),
                str(r["tenant_id"]),
            )
            for r in rows
        ]
        policy = "auto_approvals"
    admission = await ctx.limiter.admit([(policy, limit, 1) for limit in limits])
    return admission.allowed


def _key(row: Any) -> tuple[str, str]:
    return (row["indicator_value"], row["scope_key"])


async def _corroboration(
    ctx: PublishContext,
    conn: Any,
    rows: Sequence[Any],
    facts: dict[tuple[str, str], CandidateFacts],
) -> dict[tuple[str, str], tuple[int, list[uuid.UUID]]]:
    wanted = [_key(r) for r in rows if wants_corroboration(facts[_key(r)], ctx.now, ctx.policy)]
    if not wanted:
        return {}
    since = signal_store.window_start(ctx.now, ctx.policy.corroboration_window_seconds)
    return await signal_store.corroboration(conn, wanted, since)


def _plan(
    ctx: PublishContext,
    caller: NodeCaller,
    rows: Sequence[Any],
    stats: dict[tuple[str, str], _BatchStats],
    counts: dict[tuple[str, str], tuple[int, list[uuid.UUID]]],
) -> dict[tuple[str, str], list[Move]]:
    """The moves policy.py wants, per candidate key (empty lists left out)."""
    plan: dict[tuple[str, str], list[Move]] = {}
    for row in rows:
        key = _key(row)
        count = counts.get(key)
        corroboration = Corroboration(count[0], len(count[1])) if count else None
        moves = plan_publish(_facts(row, caller, stats[key]), corroboration, ctx.now, ctx.policy)
        if moves:
            plan[key] = moves
    return plan


async def _reconcile(
    ctx: PublishContext,
    conn: Any,
    caller: NodeCaller,
    keys: Sequence[tuple[str, str]],
    stats: dict[tuple[str, str], _BatchStats],
) -> dict[tuple[str, str], str]:
    """Apply policy's moves to these candidates in one transaction, on their locked,
    current rows: whatever happened since the signals were stored (a reviewer, another
    publish) is seen, and the moves commit with their decisions, audit and feed rows."""
    async with conn.transaction():
        rows = await signal_store.candidate_facts(conn, keys, lock=True)
        facts = {_key(r): _facts(r, caller, stats[_key(r)]) for r in rows}
        counts = await _corroboration(ctx, conn, rows, facts)
        taken: list[decisions.Taken] = []
        final: dict[tuple[str, str], str] = {}
        for row in rows:
            key = _key(row)
            tenant_ids = counts.get(key, (0, []))[1]
            state = row["state"]
            for move in _plan(ctx, caller, [row], stats, counts).get(key, []):
                if move.effects.cap is not None and not await _within_caps(
                    ctx, conn, caller, move, tenant_ids
                ):
                    ctx.metrics.auto_decisions.labels(f"{move.rule}_capped").inc()
                    move = capped(move)
                elif move.rule is not None and move.action != "extend":
                    ctx.metrics.auto_decisions.labels(move.rule).inc()
                actor = f"rule:{move.rule}" if move.rule else "hub"
                taken.append(decisions.Taken(row, move, actor))
                state = move.to_state
            final[key] = state
        await decisions.write(conn, taken, ctx.now)
    return final


async def _apply_policy(
    ctx: PublishContext,
    conn: Any,
    caller: NodeCaller,
    rows: Sequence[SignalRow],
    stored: Sequence[Any],
) -> dict[tuple[str, str], str]:
    """Run policy on every candidate this publish touched; move those it says to move.

    Most publishes move nothing and cost no further round trip. Duplicates count as
    touching their candidate: a node re-sending after a hub died between storing its
    signals and moving their candidates (before any 202) gets those moves made now.
    Any replica's last look at a candidate follows every earlier commit, so
    corroboration read here, after our own commit, never misses a concurrent publish.
    """
    stats = _batch_stats(rows)
    by_key = {_key(r): r for r in stored}
    missing = [k for k in stats if k not in by_key]
    if missing:
        by_key.update(
            {_key(r): r for r in await signal_store.candidate_facts(conn, missing, lock=False)}
        )
    facts = {k: _facts(r, caller, stats[k]) for k, r in by_key.items()}
    touched = list(by_key.values())
    counts = await _corroboration(ctx, conn, touched, facts)
    keys = sorted(_plan(ctx, caller, touched, stats, counts))
    if not keys:
        return {}
    for attempt in range(_RETRIES):
        try:
            return await _reconcile(ctx, conn, caller, keys, stats)
        except asyncpg.DeadlockDetectedError:
            if attempt == _RETRIES - 1:
                raise
            log.warning("publish deadlock; retrying")
    return {}


async def publish(
    ctx: PublishContext, caller: NodeCaller, envelopes: Sequence[Any], budget: int
) -> list[dict[str, Any]]:
    """`budget`: what the tenant's new-candidate window had left at admission."""
    batch = await _check_envelopes(ctx, caller, envelopes)
    async with ctx.pool.acquire() as conn:
        if batch.refused_payloads:
            await _refuse_payloads(conn, caller, batch)
        charged = await _limit_new_candidates(ctx, conn, caller, batch, budget)
        rows = [p.row for p in batch.pending]
        # The signals and their counts: one statement, its own transaction. Durable
        # from here on, so a 202 may follow; policy's moves are derived state.
        stored = (
            await signal_store.store(
                conn,
                rows,
                node_id=caller.node_id,
                tenant_id=caller.tenant_id,
                now=ctx.now,
                qualify_confidence=ctx.policy.corroboration_min_confidence,
            )
            if rows
            else []
        )
        final = await _apply_policy(ctx, conn, caller, rows, stored)
    if not charged:
        opened = len({row["candidate_id"] for row in stored if row["created"]})
        if opened:
            ctx.limiter.defer(NEW_CANDIDATES, new_candidates_limit(caller), opened)
    by_uuid = {row["signal_uuid"]: row for row in stored}
    for p in batch.pending:
        row = by_uuid.get(p.row.signal_uuid)
        if row is None:
            batch.results[p.index] = {"id": str(p.row.signal_uuid), "status": "duplicate"}
        else:
            batch.results[p.index] = {
                "id": str(p.row.signal_uuid),
                "status": "accepted",
                "candidate_id": str(row["candidate_id"]),
                "candidate_state": final.get(_key(row), row["state"]),
            }
    results = [r for r in batch.results if r is not None]
    assert len(results) == len(envelopes)
    for r in results:
        outcome = r["status"] if r["status"] != "rejected" else r["error"]["code"]
        ctx.metrics.signals.labels(outcome).inc()
    return results
