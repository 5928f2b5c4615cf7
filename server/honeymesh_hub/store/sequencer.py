"""The sequencer's SQL (services/sequencer.py has the why).

`claim` takes the sequencer's lock without waiting: a replica that finds it taken
knows another is sequencing and leaves it be. Everything else runs in the claimer's
transaction, so a replica that dies mid-round leaves nothing behind: its transaction
rolls back and the next claimer starts from the same state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

Previous = tuple[datetime, datetime, dict[str, Any]]


# The lock that makes one sequencer at a time: a transaction-level advisory lock, not
# the state row's FOR UPDATE, because a row lock gives the transaction an xid at once,
# and a running xid holds back every feed reader's xmin (store/feed.py) for the whole
# round. This way the round reads as a read-only transaction and takes an xid only
# when it writes its batch. The lock is released after the commit is visible, so the
# next claimer reads the state this one left.
_LOCK_KEY = 0x686D_7365  # "hmse"


async def claim(conn: Any) -> Any:
    """The state, this transaction holding the sequencer's lock; None when another
    replica holds it."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_KEY):
        return None
    # A statement of its own: its snapshot is taken after the lock, so it sees the
    # last holder's commit (one statement would read with a snapshot from before).
    return await conn.fetchrow(
        "SELECT xid::text AS xid, seq, ord, date_added, clock_timestamp() AS now"
        " FROM sequencer_state WHERE id = 1"
    )


# Final events after the state, in the feed's order: below the oldest transaction
# still running, none can appear later before them (store/feed.py).
_FINAL_SQL = """
WITH b AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
SELECT f.xid::text AS xid, f.seq, f.candidate_id, f.kind, f.reason, f.scope_key, f.entry,
       f.time, (SELECT b.xmin FROM b)::text AS xmin
FROM feed_log f, b
WHERE (f.xid, f.seq) > ($1::text::xid8, $2::bigint) AND f.xid < b.xmin
ORDER BY f.xid, f.seq
LIMIT $3
"""


async def final_events(conn: Any, xid: int, seq: int, limit: int) -> list[Any]:
    rows: list[Any] = await conn.fetch(_FINAL_SQL, str(xid), seq, limit)
    return rows


async def waiting(conn: Any, xid: int, seq: int) -> bool:
    """Whether events after (xid, seq) wait behind a running transaction."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM feed_log WHERE (xid, seq) > ($1::text::xid8, $2))",
            str(xid),
            seq,
        )
    )


async def previous(conn: Any, candidate_ids: Sequence[UUID]) -> dict[UUID, Previous]:
    """Each candidate's latest sequenced version: (its time, the candidate's created,
    its entry)."""
    rows = await conn.fetch(
        "SELECT candidate_id, time, created, entry FROM sequenced"
        " WHERE latest AND candidate_id = any($1::uuid[])",
        list(candidate_ids),
    )
    return {r["candidate_id"]: (r["time"], r["created"], r["entry"]) for r in rows}


async def append(conn: Any, rows: Sequence[tuple[Any, ...]], state: tuple[Any, ...]) -> None:
    """Insert sequenced rows (ord, date_added, xid, seq, candidate_id, scope_key, kind,
    reason, entry, time, created, log_index, leaf, event), mark what they supersede,
    and move the state."""
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        """
        WITH new AS (
            SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[],
                                 $5::uuid[], $6::text[], $7::text[], $8::text[], $9::jsonb[],
                                 $10::timestamptz[], $11::timestamptz[], $12::bigint[],
                                 $13::bytea[], $14::text[])
                AS n(ord, date_added, xid, seq, candidate_id, scope_key, kind, reason,
                     entry, time, created, log_index, leaf, event)
        ),
        old AS (
            UPDATE sequenced s SET latest = false
            WHERE s.latest AND s.candidate_id IN (SELECT candidate_id FROM new)
        )
        INSERT INTO sequenced (ord, date_added, xid, seq, candidate_id, scope_key, kind,
                               reason, entry, time, created, log_index, leaf, event,
                               latest)
        SELECT ord, date_added, xid::xid8, seq, candidate_id, scope_key, kind, reason,
               entry, time, created, log_index, leaf, event,
               ord = max(ord) OVER (PARTITION BY candidate_id)
        FROM new
        """,
        *columns,
    )
    await conn.execute(
        "UPDATE sequencer_state SET xid = $1::text::xid8, seq = $2, ord = $3, date_added = $4"
        " WHERE id = 1",
        *state,
    )
    # Delivered at commit to every replica's listener (notify.py): the feed's waiters
    # of these scopes wake when their events can be read. Past 7000 bytes, '*'.
    scopes = ",".join(sorted({row[5] for row in rows}))
    await conn.execute(
        "SELECT pg_notify('honeymesh_sequenced', $1)", scopes if len(scopes) <= 7000 else "*"
    )


async def position(conn: Any) -> tuple[int, int]:
    """Every feed event at or before this (xid, seq) is sequenced."""
    row = await conn.fetchrow("SELECT xid::text AS xid, seq FROM sequencer_state WHERE id = 1")
    return int(row["xid"]), int(row["seq"])


async def hub_identity(conn: Any) -> Any:
    return await conn.fetchrow("SELECT hub_id, mesh_collection, created_at FROM hub_identity")
