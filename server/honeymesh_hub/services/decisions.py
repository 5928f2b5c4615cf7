"""Moves on candidates made outside a publish: retroactive allowlisting and the
re-evaluation of rule-made approvals when a node is revoked or no longer trusted
(PROTOCOL.md section 4). Also the feed entry and move rows every path shares.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from .. import views
from ..config import PolicyConfig
from ..policy import Move
from ..store import candidates as candidate_store
from ..store import signals as signal_store
from ..store.allowlist import Network
from ..store.signals import AppliedMove


def feed_entry(row: Any, move: Move, now: datetime) -> dict[str, Any]:
    """The feed's view of a candidate as this move leaves it (PROTOCOL.md section 8)."""
    if move.to_state != "approved":
        return views.candidate_head(row)
    return views.feed_added(
        row,
        approved_at=now if move.action == "approve" else row["approved_at"],
        expires_at=move.expires_at,
        origin=move.origin or row["origin"],
    )


def applied(row: Any, move: Move, from_state: str, now: datetime, actor: str) -> AppliedMove:
    """A move with its feed event: `added` into approved, `removed` out of it."""
    feed_kind: str | None = None
    feed_reason: str | None = None
    if move.to_state == "approved":
        feed_kind = "added"
    elif from_state == "approved":
        feed_kind = "removed"
        feed_reason = "expired" if move.to_state == "expired" else "retracted"
    return AppliedMove(
        candidate_id=row["candidate_id"],
        action=move.action,
        from_state=from_state,
        to_state=move.to_state,
        origin=move.origin,
        expires_at=move.expires_at,
        reason=move.reason,
        actor=actor,
        rule=move.rule,
        feed_kind=feed_kind,
        feed_reason=feed_reason,
        scope_key=row["scope_key"],
        entry=feed_entry(row, move, now) if feed_kind else None,
        target=f"candidate:{row['candidate_id']}",
    )


async def apply_allowlist(conn: Any, net: Network, now: datetime, actor: str) -> int:
    """A new allowlist entry retracts every overlapping active decision and rejects
    every overlapping pending candidate, in the caller's transaction."""
    moves = []
    for row in await candidate_store.overlapping_for_update(conn, net):
        if row["state"] == "approved":
            move = Move("retract", "retracted", reason="allowlisted", rule="allowlist")
        elif row["state"] == "pending":
            move = Move("reject", "rejected", reason="allowlisted", rule="allowlist")
        else:
            continue
        moves.append(applied(row, move, row["state"], now, actor))
    await signal_store.apply_moves(conn, moves, now)
    return len(moves)


async def revalidate_node(
    conn: Any, node_id: UUID, now: datetime, policy: PolicyConfig, actor: str
) -> int:
    """Retract the `auto` and `trusted` approvals that no longer meet their rule once
    this node's signals stop counting (revoked) or its trust is gone."""
    moves = []
    for row in await candidate_store.rule_approved_reported_by(conn, node_id):
        key = (row["indicator_value"], row["scope_key"])
        if row["origin"] == "auto":
            since = row["approved_at"] - timedelta(seconds=policy.corroboration_window_seconds)
            counts = await signal_store.corroboration(conn, [key], since)
            nodes, tenants = counts.get(key, (0, []))
            holds = (
                nodes >= policy.corroboration_min_nodes
                and len(tenants) >= policy.corroboration_min_tenants
            )
        else:
            holds = await candidate_store.trusted_support(
                conn, key[0], key[1], policy.trusted_min_confidence
            )
        if not holds:
            move = Move(
                "retract", "retracted", reason="its rule no longer holds", rule="revalidation"
            )
            moves.append(applied(row, move, "approved", now, actor))
    await signal_store.apply_moves(conn, moves, now)
    return len(moves)
