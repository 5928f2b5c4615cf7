"""Writing lifecycle moves, for every path (publish, review, expiry, allowlist,
revalidation), and the moves made outside a publish: retroactive allowlisting and the
re-evaluation of rule-made approvals when a node is revoked or no longer trusted
(PROTOCOL.md section 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from .. import lifecycle, views
from ..config import PolicyConfig
from ..lifecycle import Corroboration, Move, Trigger
from ..store import candidates as candidate_store
from ..store import signals as signal_store
from ..store.allowlist import Network
from ..store.signals import AppliedMove, CandidateChange


@dataclass(frozen=True, slots=True)
class Taken:
    """A move taken on a locked candidate row, by an actor."""

    row: Any
    move: Move
    actor: str


def feed_entry(row: Any, move: Move, now: datetime) -> dict[str, Any]:
    """The feed's view of a candidate as this move leaves it (PROTOCOL.md section 8)."""
    if move.to_state != "approved":
        return views.candidate_head(row)
    return views.feed_added(
        row,
        approved_at=now if move.origin is not None else row["approved_at"],
        expires_at=move.expires_at,
        origin=move.origin or row["origin"],
    )


def _applied(taken: Taken, now: datetime) -> AppliedMove:
    row, move = taken.row, taken.move
    feed = move.feed
    return AppliedMove(
        candidate_id=row["candidate_id"],
        action=move.action,
        from_state=move.from_state,
        to_state=move.to_state,
        origin=move.origin,
        reason=move.reason,
        actor=taken.actor,
        rule=move.rule,
        logged=move.effects.logged,
        feed_kind=feed[0] if feed else None,
        feed_reason=feed[1] if feed else None,
        scope_key=row["scope_key"],
        entry=feed_entry(row, move, now) if feed else None,
        target=f"candidate:{row['candidate_id']}",
    )


async def write(conn: Any, taken: Sequence[Taken], now: datetime) -> None:
    """Write these moves in one statement: each candidate's moves folded in order
    (lifecycle.fold) with their decision, audit and feed rows."""
    if not taken:
        return
    by_candidate: dict[UUID, list[Move]] = {}
    for t in taken:
        by_candidate.setdefault(t.row["candidate_id"], []).append(t.move)
    changes = []
    for cid, moves in by_candidate.items():
        change = lifecycle.fold(moves, now)
        changes.append(CandidateChange(cid, change.state, change.columns))
    await signal_store.apply_moves(conn, [_applied(t, now) for t in taken], changes, now)


async def apply_allowlist(conn: Any, net: Network, now: datetime, actor: str) -> int:
    """A new allowlist entry retracts every overlapping active decision and rejects
    every overlapping pending candidate, in the caller's transaction."""
    taken = []
    for row in await candidate_store.overlapping_for_update(conn, net):
        move = lifecycle.on_allowlist(row["state"])
        if move is not None:
            taken.append(Taken(row, move, actor))
    await write(conn, taken, now)
    return len(taken)


async def revalidate_node(
    conn: Any, node_id: UUID, now: datetime, policy: PolicyConfig, actor: str
) -> int:
    """Retract the `auto` and `trusted` approvals that no longer meet their rule once
    this node's signals stop counting (revoked) or its trust is gone. Two reads for
    any number of candidates: corroboration for the auto ones, trust for the others."""
    rows = await candidate_store.rule_approved_reported_by(conn, node_id)
    auto = [r for r in rows if r["origin"] == "auto"]
    trusted = [r for r in rows if r["origin"] != "auto"]
    counts: dict[tuple[str, str], tuple[int, list[UUID]]] = {}
    window = timedelta(seconds=policy.corroboration_window_seconds)
    # Each approval is judged by the window before its own approval; one read per
    # distinct window start, usually one.
    for since in sorted({r["approved_at"] - window for r in auto}):
        keys = [_key(r) for r in auto if r["approved_at"] - window == since]
        counts.update(await signal_store.corroboration(conn, keys, since))
    supported = await candidate_store.trusted_support_of(
        conn, [_key(r) for r in trusted], policy.trusted_min_confidence
    )
    taken = []
    for row in rows:
        key = _key(row)
        if row["origin"] == "auto":
            nodes, tenants = counts.get(key, (0, []))
            holds = lifecycle.corroborated(Corroboration(nodes, len(tenants)), policy)
        else:
            holds = key in supported
        if not holds:
            move = lifecycle.move(
                Trigger.REVALIDATE,
                row["state"],
                reason="its rule no longer holds",
                rule="revalidation",
            )
            taken.append(Taken(row, move, actor))
    await write(conn, taken, now)
    return len(taken)


def _key(row: Any) -> tuple[str, str]:
    return (row["indicator_value"], row["scope_key"])
