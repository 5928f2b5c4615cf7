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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

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
from ..store import signals as signal_store
from ..store.signals import SignalRow, StorePart
from . import decisions
from .budgets import ApprovalCaps, NewCandidateBudget
from .envelopes import Batch, Pending, check_envelopes, refusal, refuse_payloads
from .groupcommit import StoreGroups

log = logging.getLogger("honeymesh.publish")

_RETRIES = 3


@dataclass(frozen=True, slots=True)
class Publishing:
    """What publishing needs, built once per app (wiring.py)."""

    pool: Any
    directory: KeyDirectory
    budget: NewCandidateBudget
    caps: ApprovalCaps
    metrics: Metrics
    policy: PolicyConfig
    groups: StoreGroups  # single publishes of this process, stored together

    def at(self, now: datetime) -> PublishContext:
        return PublishContext(self, now)


@dataclass(frozen=True, slots=True)
class PublishContext:
    """One publish: the app's publishing services and the hub's time for it."""

    deps: Publishing
    now: datetime

    @property
    def pool(self) -> Any:
        return self.deps.pool

    @property
    def directory(self) -> KeyDirectory:
        return self.deps.directory

    @property
    def metrics(self) -> Metrics:
        return self.deps.metrics

    @property
    def policy(self) -> PolicyConfig:
        return self.deps.policy


async def _limit_new_candidates(
    ctx: PublishContext, caller: NodeCaller, batch: Batch, budget: int
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
    if budget - ctx.deps.budget.uncharged(caller) >= len(keys):
        return False
    async with ctx.pool.acquire() as conn:
        existing = await signal_store.existing_keys(conn, keys)
    new = [k for k in keys if k not in existing]
    if not new:
        return True
    granted = await ctx.deps.budget.take(caller, len(new))
    refused = set(new[granted:])
    if not refused:
        return True
    kept: list[Pending] = []
    for p in batch.pending:
        if (p.row.indicator_value, p.row.scope_key) in refused:
            batch.results[p.index] = refusal(
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
class BatchStats:
    """What this publish says of one candidate: its longest TTL and strongest signal."""

    max_ttl: int
    max_confidence: int


def _batch_stats(rows: Sequence[SignalRow]) -> dict[tuple[str, str], BatchStats]:
    stats: dict[tuple[str, str], BatchStats] = {}
    for r in rows:
        key = (r.indicator_value, r.scope_key)
        seen = stats.get(key)
        stats[key] = BatchStats(
            max(r.ttl_seconds, seen.max_ttl if seen else 0),
            max(r.confidence, seen.max_confidence if seen else 0),
        )
    return stats


def _facts(row: Any, caller: NodeCaller, batch: BatchStats) -> CandidateFacts:
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
    cap = move.effects.cap
    assert cap is not None
    if cap == "trusted_approvals":
        amount = caller.identity.tenant.limits["trusted_approvals_per_day"]
        windows = [(str(caller.node_id), amount)]
    else:
        windows = [
            (
                str(r["tenant_id"]),
                effective_limits(r["plan"], r["limits"])["auto_approvals_per_day"],
            )
            for r in await signal_store.tenant_limits(conn, tenant_ids)
        ]
    return await ctx.deps.caps.spend(cap, windows)


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
    stats: dict[tuple[str, str], BatchStats],
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
    stats: dict[tuple[str, str], BatchStats],
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
    A connection is taken only when a step needs one: most publishes need none.
    """
    stats = _batch_stats(rows)
    by_key = {_key(r): r for r in stored}
    missing = [k for k in stats if k not in by_key]
    if missing:
        async with ctx.pool.acquire() as conn:
            found = await signal_store.candidate_facts(conn, missing, lock=False)
        by_key.update({_key(r): r for r in found})
    facts = {k: _facts(r, caller, stats[k]) for k, r in by_key.items()}
    touched = list(by_key.values())
    if any(wants_corroboration(f, ctx.now, ctx.policy) for f in facts.values()):
        async with ctx.pool.acquire() as conn:
            counts = await _corroboration(ctx, conn, touched, facts)
    else:
        counts = {}
    keys = sorted(_plan(ctx, caller, touched, stats, counts))
    if not keys:
        return {}
    async with ctx.pool.acquire() as conn:
        for attempt in range(_RETRIES):
            try:
                return await _reconcile(ctx, conn, caller, keys, stats)
            except asyncpg.DeadlockDetectedError:
                if attempt == _RETRIES - 1:
                    raise
                log.warning("publish deadlock; retrying")
    return {}


async def _store(ctx: PublishContext, caller: NodeCaller, rows: list[SignalRow]) -> list[Any]:
    """The signals and their counts: one statement, its own transaction, committed
    when this returns (so a 202 may follow; policy's moves are derived state). A single
    publish joins this process's group commit; a batch is its own statement."""
    if not rows:
        return []
    part = StorePart(rows, caller.node_id, caller.tenant_id, ctx.now)
    if len(rows) == 1:
        return await ctx.deps.groups.store(part)
    async with ctx.pool.acquire() as conn:
        return await signal_store.store_parts(
            conn, [part], qualify_confidence=ctx.policy.corroboration_min_confidence
        )


async def publish(
    ctx: PublishContext, caller: NodeCaller, envelopes: Sequence[Any], budget: int
) -> list[dict[str, Any]]:
    """`budget`: what the tenant's new-candidate window had left at admission."""
    batch = await check_envelopes(ctx, caller, envelopes)
    # No connection is held across the steps: a grouped store waits on others' requests.
    if batch.refused_payloads:
        async with ctx.pool.acquire() as conn:
            await refuse_payloads(conn, caller, batch)
    charged = await _limit_new_candidates(ctx, caller, batch, budget)
    rows = [p.row for p in batch.pending]
    stored = await _store(ctx, caller, rows)
    final = await _apply_policy(ctx, caller, rows, stored)
    if not charged:
        opened = len({row["candidate_id"] for row in stored if row["created"]})
        if opened:
            ctx.deps.budget.charge_later(caller, opened)
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
