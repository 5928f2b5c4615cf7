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

# The feed reads the sequenced rows (services/sequencer.py), never feed_log itself:
# they are a prefix of the feed's (xid, seq) order that only grows at its end, and a
# statement's snapshot sees them exactly up to the sequencer's position it reads in the
# same snapshot. So a delta that ends at that position has served every event before
# it, and nothing can later appear before it: the no-skip argument above, moved from
# xmin to the sequencer's position, which is below xmin. `pending`: feed events wait
# beyond the position, in any scope (the caller has them sequenced now,
# services/feed.py): the log's newest event, one backward index step. Filtered by the
# caller's scopes, PostgreSQL plans it as a backward scan of the whole log whenever
# they have no such event, which is nearly always; another scope's pending events
# only make a read look again, until the next round.
_PENDING = """
       coalesce((SELECT (p.xid, p.seq) FROM feed_log p ORDER BY p.xid DESC, p.seq DESC
                 LIMIT 1) > (h.xid, h.seq), false)
           OR EXISTS (SELECT 1 FROM sequenced u WHERE u.log_index IS NULL) AS pending"""
_DELTA_SQL = f"""
WITH h AS (SELECT xid, seq FROM sequencer_state WHERE id = 1),
e AS (
    SELECT q.xid, q.seq, q.candidate_id, q.kind, q.scope_key, q.log_index, q.event
    FROM sequenced q, h
    WHERE (q.xid, q.seq) > ($1::text::xid8, $2::bigint) AND (q.xid, q.seq) <= (h.xid, h.seq)
      AND q.scope_key = any($3::text[])
    ORDER BY q.xid, q.seq
    LIMIT $4
)
SELECT h.xid::text AS head_xid, h.seq AS head_seq, {_PENDING},
       w.compacted_xid::text AS low_xid, w.compacted_seq AS low_seq,
       e.xid::text AS xid, e.seq, e.candidate_id, e.kind, e.scope_key, e.log_index, e.event
FROM h CROSS JOIN feed_state w LEFT JOIN e ON true
ORDER BY e.xid, e.seq
"""


async def delta(
    conn: Any, xid: int, seq: int, scopes: Sequence[str], limit: int
) -> tuple[tuple[int, int], bool, list[Any], tuple[int, int]]:
    """Sequenced events after (xid, seq) visible in `scopes`, up to the sequencer's
    position; that position, whether feed events wait beyond it, and the compaction
    watermark read in the same statement (a cursor below it has expired)."""
    rows = await conn.fetch(_DELTA_SQL, str(xid), seq, list(scopes), limit)
    head = (int(rows[0]["head_xid"]), int(rows[0]["head_seq"]))
    low = (int(rows[0]["low_xid"]), int(rows[0]["low_seq"]))
    pending = bool(rows[0]["pending"])
    return head, pending, [r for r in rows if r["seq"] is not None], low


async def boundary(conn: Any) -> int:
    value = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
    return int(value)


async def watermark(conn: Any) -> tuple[int, int]:
    row = await conn.fetchrow("SELECT compacted_xid::text AS xid, compacted_seq FROM feed_state")
    return int(row["xid"]), int(row["compacted_seq"])


async def head(conn: Any) -> tuple[tuple[int, int], bool]:
    """The sequencer's position, and whether feed events wait beyond it, in any scope
    (or rows wait for their leaves); _DELTA_SQL says why any."""
    row = await conn.fetchrow(
        f"SELECT h.xid::text AS xid, h.seq, {_PENDING} FROM sequencer_state h WHERE h.id = 1"
    )
    return (int(row["xid"]), int(row["seq"])), bool(row["pending"])


async def unchanged_since(conn: Any, xid: int, seq: int, scopes: Sequence[str]) -> bool:
    """Whether no sequenced event visible in `scopes` is after (xid, seq): a snapshot
    as of then is a snapshot as of now."""
    return not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM sequenced WHERE (xid, seq) > ($1::text::xid8, $2::bigint)"
        " AND scope_key = any($3::text[]))",
        str(xid),
        seq,
        list(scopes),
    )


async def log_sizes(conn: Any, xid: int, seq: int, scopes: Sequence[str]) -> dict[str, int]:
    """Each scope's log size as of the sequenced position (xid, seq)."""
    rows = await conn.fetch(
        """
        SELECT sc AS scope_key,
               coalesce((SELECT s.log_index + 1 FROM sequenced s
                         WHERE s.scope_key = sc AND (s.xid, s.seq) <= ($1::text::xid8, $2::bigint)
                         ORDER BY s.log_index DESC LIMIT 1), 0) AS size
        FROM unnest($3::text[]) AS sc
        """,
        str(xid),
        seq,
        list(scopes),
    )
    return {r["scope_key"]: int(r["size"]) for r in rows}


# A snapshot page: the active set as of the sequenced position P = ($3, $4), each
# decision as its last addition at or before P logged it (its served text: the leaf
# less `event`, with its `leaf` place, made by the sequencer), in candidate order; one
# row more than served answers `more`. An addition is in the set as of P if it is the
# candidate's latest row, or if no row of the candidate follows it up to P. Two texts,
# as the old snapshot had, so a generic plan never turns `$5 IS NULL OR` into a scan of
# the pages before.
_SNAPSHOT_SQL = """
WITH page AS (
    SELECT s.candidate_id, s.scope_key, s.event,
           row_number() OVER (ORDER BY s.candidate_id) AS rn
    FROM sequenced s
    WHERE s.kind = 'added' AND s.scope_key = any($1::text[])
      AND (s.xid, s.seq) <= ($3::text::xid8, $4::bigint){after}
      AND (s.latest OR NOT EXISTS (
            SELECT 1 FROM sequenced n
            WHERE n.candidate_id = s.candidate_id AND n.ord > s.ord
              AND (n.xid, n.seq) <= ($3::text::xid8, $4::bigint)))
    ORDER BY s.candidate_id
    LIMIT $2::int + 1
)
SELECT count(*) FILTER (WHERE rn <= $2) AS n,
       (array_agg(candidate_id ORDER BY candidate_id DESC) FILTER (WHERE rn <= $2))[1] AS last_id,
       '[' || coalesce(string_agg(event, ',' ORDER BY candidate_id) FILTER (WHERE rn <= $2),
                       '') || ']' AS added,
       array_agg(DISTINCT scope_key) FILTER (WHERE rn <= $2) AS scopes,
       count(*) > $2 AS more
FROM page
"""
_SNAPSHOT_FIRST_SQL, _SNAPSHOT_AFTER_SQL = (
    _SNAPSHOT_SQL.format(after=after) for after in ("", " AND s.candidate_id > $5::uuid")
)


async def snapshot(
    conn: Any, scopes: Sequence[str], xid: int, seq: int, after: UUID | None, limit: int
) -> tuple[int, UUID | None, str, list[str], bool]:
    """A page of the active set as of (xid, seq): (count, last id, the entries as JSON
    text, the scopes they are of, more)."""
    args: list[Any] = [list(scopes), limit, str(xid), seq]
    if after is None:
        row = await conn.fetchrow(_SNAPSHOT_FIRST_SQL, *args)
    else:
        row = await conn.fetchrow(_SNAPSHOT_AFTER_SQL, *args, after)
    return row["n"], row["last_id"], row["added"], list(row["scopes"] or []), row["more"]


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
