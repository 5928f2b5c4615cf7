"""Feed log reads, provenance and compaction (PROTOCOL.md section 8).

Why a cursor never skips an event: each event row carries the id of the transaction
that wrote it (`xid`). A reader serves only events whose transaction is older than
its snapshot's xmin, the oldest transaction still running anywhere; every such
transaction has finished, so no event can appear later below that line. Events are
served in (xid, seq) order and a cursor is a point in that order, so whatever
commits concurrently on any replica lands after every cursor already handed out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

_DELTA_SQL = """
WITH b AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
e AS (
    SELECT f.seq, f.xid, f.candidate_id, f.kind, f.reason, f.entry
    FROM feed_log f, b
    WHERE (f.xid, f.seq) > ($1::text::xid8, $2::bigint) AND f.xid < b.xmin
      AND f.scope_key = any($3::text[])
    ORDER BY f.xid, f.seq
    LIMIT $4
)
SELECT b.xmin::text AS xmin,
       EXISTS (SELECT 1 FROM feed_log p
               WHERE p.xid >= b.xmin AND (p.xid, p.seq) > ($1::text::xid8, $2::bigint)
                 AND p.scope_key = any($3::text[])) AS pending,
       e.seq, e.xid::text AS xid, e.candidate_id, e.kind, e.reason, e.entry
FROM b LEFT JOIN e ON true
ORDER BY e.xid, e.seq
"""


async def delta(
    conn: Any, xid: int, seq: int, scopes: Sequence[str], limit: int
) -> tuple[int, bool, list[Any]]:
    """Events after (xid, seq) that are final, visible in `scopes`; with the xmin
    they are final below, and whether visible events wait above it."""
    rows = await conn.fetch(_DELTA_SQL, str(xid), seq, list(scopes), limit)
    xmin = int(rows[0]["xmin"])
    pending = bool(rows[0]["pending"])
    return xmin, pending, [r for r in rows if r["seq"] is not None]


async def boundary(conn: Any) -> int:
    value = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
    return int(value)


async def watermark(conn: Any) -> tuple[int, int]:
    row = await conn.fetchrow("SELECT compacted_xid::text AS xid, compacted_seq FROM feed_state")
    return int(row["xid"]), int(row["compacted_seq"])


_SNAPSHOT_SQL = """
SELECT id, id AS candidate_id, indicator_type, indicator_value, scope, scope_tenant_id,
       scenarios, max_confidence, reporters, approved_at, expires_at, origin
FROM candidates
WHERE state = 'approved' AND scope_key = any($1::text[])
  AND ($2::uuid IS NULL OR id > $2::uuid)
ORDER BY id
LIMIT $3
"""


async def snapshot(conn: Any, scopes: Sequence[str], after: UUID | None, limit: int) -> list[Any]:
    rows: list[Any] = await conn.fetch(_SNAPSHOT_SQL, list(scopes), after, limit)
    return rows


async def provenance(conn: Any, candidate_id: UUID, scopes: Sequence[str]) -> tuple[Any, list[Any]]:
    """An approved decision visible in `scopes` and its newest 100 signals."""
    candidate = await conn.fetchrow(
        "SELECT id, indicator_type, indicator_value, scope_key FROM candidates"
        " WHERE id = $1 AND state = 'approved' AND scope_key = any($2::text[])",
        candidate_id,
        list(scopes),
    )
    if candidate is None:
        return None, []
    signals: list[Any] = await conn.fetch(
        "SELECT keyid, node_id, received_at, payload, sig FROM signals"
        " WHERE indicator_value = $1 AND scope_key = $2"
        " ORDER BY received_at DESC, id LIMIT 100",
        candidate["indicator_value"],
        candidate["scope_key"],
    )
    return candidate, signals


async def compact(conn: Any, before: datetime) -> int:
    """Delete events older than `before`; raise the watermark to the last one deleted."""
    row = await conn.fetchrow(
        """
        WITH gone AS (DELETE FROM feed_log WHERE time < $1 RETURNING xid, seq),
        top AS (SELECT xid, seq FROM gone ORDER BY xid DESC, seq DESC LIMIT 1),
        up AS (
            UPDATE feed_state s SET compacted_xid = top.xid, compacted_seq = top.seq
            FROM top WHERE (top.xid, top.seq) > (s.compacted_xid, s.compacted_seq)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM gone) AS n
        """,
        before,
    )
    return int(row["n"])
