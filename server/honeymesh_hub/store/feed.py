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


async def unchanged_since(conn: Any, xid: int, scopes: Sequence[str]) -> bool:
    """Whether no event visible in `scopes` is in the log from transaction `xid` on
    (so a read that began at xmin `xid` is what a read now would be), and the log is
    kept from there."""
    return bool(
        await conn.fetchval(
            """
            SELECT NOT EXISTS (SELECT 1 FROM feed_log
                               WHERE scope_key = any($2::text[]) AND xid >= $1::text::xid8)
                   AND (SELECT (compacted_xid, compacted_seq) < ($1::text::xid8, 0::bigint)
                        FROM feed_state)
            """,
            str(xid),
            list(scopes),
        )
    )


async def watermark(conn: Any) -> tuple[int, int]:
    row = await conn.fetchrow("SELECT compacted_xid::text AS xid, compacted_seq FROM feed_state")
    return int(row["xid"]), int(row["compacted_seq"])


def _utc(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


# The entry of views.feed_added, built by PostgreSQL: a snapshot page of thousands of
# decisions goes to the node as the JSON text the database made, never as Python
# objects (a page's cost is then the index scan and the copy).
_ENTRY = ", ".join(
    (
        "'id', id",
        "'indicator', json_build_object('type', indicator_type, 'value', indicator_value)",
        "'scope', scope",
        "{tenant}'scenarios', scenarios",
        "'confidence', max_confidence",
        "'reporters', reporters",
        f"'approved_at', {_utc('approved_at')}",
        f"'expires_at', {_utc('expires_at')}",
        "'origin', origin",
    )
)

# A page reads one row more than it serves: that row answers `more`. There are two
# texts, the first page's and the others' (`id > $3`), not one with `$3 IS NULL OR`:
# asyncpg prepares each statement once per connection, and PostgreSQL soon switches a
# prepared statement to a generic plan, in which that OR is no index condition, so page
# k would scan the k pages before it (a snapshot quadratic in its size).
_SNAPSHOT_SQL = """
WITH page AS (
    SELECT id, indicator_type, indicator_value, scope, scope_tenant_id, scenarios,
           max_confidence, reporters, approved_at, expires_at, origin,
           row_number() OVER (ORDER BY id) AS rn
    FROM candidates
    WHERE state = 'approved' AND scope_key = any($1::text[]){after}
    ORDER BY id
    LIMIT $2::int + 1
)
SELECT count(*) FILTER (WHERE rn <= $2) AS n,
       (array_agg(id ORDER BY id DESC) FILTER (WHERE rn <= $2))[1] AS last_id,
       coalesce(json_agg(CASE WHEN scope_tenant_id IS NULL
                              THEN json_build_object({mesh})
                              ELSE json_build_object({tenant})
                         END ORDER BY id) FILTER (WHERE rn <= $2), '[]'::json)::text AS added,
       count(*) > $2 AS more
FROM page
"""
_SNAPSHOT_FIRST_SQL, _SNAPSHOT_AFTER_SQL = (
    _SNAPSHOT_SQL.format(
        after=after,
        mesh=_ENTRY.format(tenant=""),
        tenant=_ENTRY.format(tenant="'tenant_id', scope_tenant_id, "),
    )
    for after in ("", " AND id > $3::uuid")
)


async def snapshot(
    conn: Any, scopes: Sequence[str], after: UUID | None, limit: int
) -> tuple[int, UUID | None, str, bool]:
    """A page of the active set: (count, last id, the entries as JSON text, more)."""
    if after is None:
        row = await conn.fetchrow(_SNAPSHOT_FIRST_SQL, list(scopes), limit)
    else:
        row = await conn.fetchrow(_SNAPSHOT_AFTER_SQL, list(scopes), limit, after)
    return row["n"], row["last_id"], row["added"], row["more"]


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
    """Delete events older than `before` that are sequenced (services/sequencer.py);
    raise the watermark to the last one deleted."""
    row = await conn.fetchrow(
        """
        WITH gone AS (
            DELETE FROM feed_log
            WHERE time < $1
              AND (xid, seq) <= (SELECT xid, seq FROM sequencer_state WHERE id = 1)
            RETURNING xid, seq
        ),
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


async def cursor_key(conn: Any) -> bytes:
    """The cursor MAC key every replica shares, made at the first migration."""
    return bytes(await conn.fetchval("SELECT value FROM hub_secrets WHERE name = 'cursor_mac'"))
