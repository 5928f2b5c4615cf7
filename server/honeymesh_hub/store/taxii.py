"""TAXII pages: sequenced rows of one scope in `date_added` order (PROTOCOL.md 14 r2).

Each page is read in one statement together with the sequencer's `ord`, which names
exactly what that statement's snapshot holds (the rows and their `latest` flags move
in the sequencer's one transaction): services/taxii.py keys its shared renderings by
it. See services/sequencer.py for why `date_added` never goes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

# The filters are parameters, each `IS NULL` or applied; the statement is the same
# for every query, and its index is (scope_key, date_added).
_PAGE_SQL = """
WITH s AS (SELECT ord AS hw FROM sequencer_state WHERE id = 1)
SELECT s.hw, p.*
FROM s LEFT JOIN LATERAL (
    SELECT q.date_added, q.candidate_id, q.kind, q.reason, q.entry, q.time, q.created
    FROM sequenced q
    WHERE q.scope_key = $1 AND q.date_added > $2 AND q.ord <= s.hw
      AND ($3::uuid[] IS NULL OR q.candidate_id = any($3::uuid[]))
      AND CASE $4::text WHEN 'last' THEN q.latest
                        WHEN 'first' THEN q.time = q.created
                        WHEN 'all' THEN true
                        ELSE q.time = any($5::timestamptz[]) END
    ORDER BY q.date_added
    LIMIT $6
) p ON true
ORDER BY p.date_added
"""


async def page(
    conn: Any,
    scope_key: str,
    after: datetime,
    ids: Sequence[UUID] | None,
    versions: str,
    timestamps: Sequence[datetime],
    limit: int,
) -> tuple[int, list[Any]]:
    """(the sequencer's ord the read saw, up to `limit` rows after `after`)."""
    rows = await conn.fetch(
        _PAGE_SQL,
        scope_key,
        after,
        None if ids is None else list(ids),
        versions,
        list(timestamps),
        limit,
    )
    return int(rows[0]["hw"]), [r for r in rows if r["date_added"] is not None]


async def high_water(conn: Any) -> int:
    return int(await conn.fetchval("SELECT ord FROM sequencer_state WHERE id = 1"))


async def exists(conn: Any, scope_key: str, candidate_id: UUID) -> bool:
    """Whether a decision has a version in the scope's collection."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM sequenced WHERE candidate_id = $1 AND scope_key = $2)",
            candidate_id,
            scope_key,
        )
    )
