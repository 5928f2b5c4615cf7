"""Candidate reads for re-evaluation (allowlist additions, revoked or untrusted nodes).

Rows carry the columns `services/decisions.py` needs to build moves and feed entries,
and are locked, so the re-evaluation and the moves it causes are one atomic step.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from .allowlist import Network

_COLUMNS = (
    "c.id AS candidate_id, c.indicator_type, c.indicator_value, c.scope, c.scope_tenant_id,"
    " c.scope_key, c.state, c.origin, c.scenarios, c.reporters, c.max_confidence,"
    " c.approved_at, c.expires_at"
)


async def overlapping_for_update(conn: Any, net: Network) -> list[Any]:
    """Every candidate overlapping `net`, whatever its state, locked in the order a
    publish locks them (no deadlock): a reviewer or a publish about to move one waits."""
    rows: list[Any] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM candidates c WHERE c.network && $1::cidr"
        " ORDER BY c.indicator_value, c.scope_key FOR UPDATE OF c",
        net,
    )
    return rows


async def rule_approved_reported_by(conn: Any, node_id: UUID) -> list[Any]:
    """Approved `auto` or `trusted` candidates this node reported, locked."""
    rows: list[Any] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM candidates c"
        " JOIN candidate_reporters r"
        "   ON r.indicator_value = c.indicator_value AND r.scope_key = c.scope_key"
        " WHERE r.node_id = $1 AND c.state = 'approved' AND c.origin IN ('auto', 'trusted')"
        " ORDER BY c.id FOR UPDATE OF c",
        node_id,
    )
    return rows


async def trusted_support_of(
    conn: Any, keys: list[tuple[str, str]], bar: int
) -> set[tuple[str, str]]:
    """Which of these candidates a trusted, unrevoked node still backs with a signal at
    the trusted bar; one read for all of them."""
    if not keys:
        return set()
    rows = await conn.fetch(
        "SELECT DISTINCT s.indicator_value, s.scope_key FROM signals s"
        " JOIN nodes n ON n.id = s.node_id"
        " WHERE (s.indicator_value, s.scope_key) IN"
        "       (SELECT * FROM unnest($1::text[], $2::text[]))"
        " AND s.confidence >= $3 AND n.trusted AND n.revoked_at IS NULL",
        [k[0] for k in keys],
        [k[1] for k in keys],
        bar,
    )
    return {(r["indicator_value"], r["scope_key"]) for r in rows}
