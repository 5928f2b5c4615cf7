"""CrowdSec bouncer streams (PROTOCOL.md 13.1): positions, active pages, deltas, lookups.

A delta is the feed's (store/feed.py): only events of finished transactions (below
the oldest running transaction's xid), in (xid, seq) order, so a position never skips
an event that commits later with a smaller id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID


async def position(conn: Any, key_id: UUID) -> Any:
    """The key's stored position (xid, seq, epoch), or None."""
    return await conn.fetchrow(
        "SELECT xid::text AS xid, seq, epoch FROM crowdsec_positions WHERE key_id = $1",
        key_id,
    )


async def unchanged_since(conn: Any, xid: int, scopes: Sequence[str]) -> bool:
    """Whether no feed event visible in `scopes` is from transaction `xid` on (so a read
    that began at xmin `xid` is what a read now would be), and the log is kept there."""
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


async def save_position(
    conn: Any, key_id: UUID, xid: int, seq: int, epoch: int, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO crowdsec_positions (key_id, xid, seq, epoch, updated_at)"
        " VALUES ($1, $2::text::xid8, $3, $4, $5)"
        " ON CONFLICT (key_id) DO UPDATE SET xid = excluded.xid, seq = excluded.seq,"
        " epoch = excluded.epoch, updated_at = excluded.updated_at",
        key_id,
        str(xid),
        seq,
        epoch,
        now,
    )


# Keyset pages by crowdsec_id: two texts (first page, later pages), as store/feed.py
# explains, so a generic plan never turns `$n IS NULL OR` into a scan of the pages before.
_ACTIVE_SQL = """
SELECT id, crowdsec_id, indicator_type, indicator_value, scenarios, expires_at
FROM candidates
WHERE state = 'approved' AND scope_key = any($1::text[]) AND indicator_type = any($2::text[])
  AND expires_at > $3{after}
ORDER BY crowdsec_id
LIMIT $4
"""
_ACTIVE_FIRST_SQL = _ACTIVE_SQL.format(after="")
_ACTIVE_AFTER_SQL = _ACTIVE_SQL.format(after=" AND crowdsec_id > $5")


async def active_page(
    conn: Any,
    scopes: Sequence[str],
    types: Sequence[str],
    now: datetime,
    after: int | None,
    limit: int,
) -> list[Any]:
    """A page of the active decisions in `scopes` of these indicator types."""
    args: list[Any] = [list(scopes), list(types), now, limit]
    if after is None:
        return list(await conn.fetch(_ACTIVE_FIRST_SQL, *args))
    return list(await conn.fetch(_ACTIVE_AFTER_SQL, *args, after))


_DELTA_SQL = """
WITH b AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
e AS (
    SELECT f.seq, f.xid, f.candidate_id, f.kind, f.entry, f.time
    FROM feed_log f, b
    WHERE (f.xid, f.seq) > ($1::text::xid8, $2::bigint) AND f.xid < b.xmin
      AND f.scope_key = any($3::text[])
    ORDER BY f.xid, f.seq
    LIMIT $4
)
SELECT b.xmin::text AS xmin, e.seq, e.xid::text AS xid, e.candidate_id, e.kind,
       e.entry, e.time, c.crowdsec_id, c.indicator_type, c.indicator_value, c.scenarios,
       c.expires_at,
       (SELECT p.kind FROM feed_log p
        WHERE p.candidate_id = e.candidate_id
          AND (p.xid, p.seq) <= ($1::text::xid8, $2::bigint)
        ORDER BY p.xid DESC, p.seq DESC LIMIT 1) AS before
FROM b LEFT JOIN e ON true LEFT JOIN candidates c ON c.id = e.candidate_id
ORDER BY e.xid, e.seq
"""


async def delta(
    conn: Any, xid: int, seq: int, scopes: Sequence[str], limit: int
) -> tuple[int, list[Any]]:
    """Final events after (xid, seq) in `scopes`, each with its candidate and the kind
    of the candidate's last event at or before (xid, seq) (`before`); and the xmin
    they are final below."""
    rows = await conn.fetch(_DELTA_SQL, str(xid), seq, list(scopes), limit)
    return int(rows[0]["xmin"]), [r for r in rows if r["seq"] is not None]


async def containing(
    conn: Any, scopes: Sequence[str], network: str | None, contains: bool, now: datetime
) -> list[Any]:
    """Active decisions in `scopes` that contain `network` (or lie within it when
    `contains` is false); every active one when `network` is None."""
    if network is None:
        match = "true"
    elif contains:
        match = "network >>= $3::cidr"
    else:
        match = "network <<= $3::cidr"
    args: list[Any] = [list(scopes), now]
    if network is not None:
        args.append(network)
    rows: list[Any] = await conn.fetch(
        "SELECT id, crowdsec_id, indicator_type, indicator_value, scenarios, expires_at"
        " FROM candidates"
        " WHERE state = 'approved' AND scope_key = any($1::text[]) AND expires_at > $2"
        f" AND {match} ORDER BY crowdsec_id LIMIT 10000",
        *args,
    )
    return rows
