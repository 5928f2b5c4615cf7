"""Request nonces in PostgreSQL: the one record of spent nonces (PROTOCOL.md 2 r2).

Every replica spends every nonce here, so a replay is refused whatever Redis does.
The insert commits without waiting for its WAL flush (`synchronous_commit` off for
that statement alone): a nonce is on disk within a fraction of a second, and only a
PostgreSQL crash in that fraction could forget one. What a replay of such a request
could do is idempotent anyway (a publish answers `duplicate`, a feed read changes
nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


async def remember(conn: Any, keyid: str, nonce: str, now: datetime, ttl_seconds: int) -> bool:
    """True when the nonce is new for that key (or its earlier use has expired)."""
    return (keyid, nonce) in await remember_many(conn, [(keyid, nonce, now)], ttl_seconds)


async def remember_many(
    conn: Any, uses: Sequence[tuple[str, str, datetime]], ttl_seconds: int
) -> set[tuple[str, str]]:
    """`remember` for distinct (keyid, nonce, now) at once, in one statement: the
    (keyid, nonce) that were new. Rows go in key order, so two statements racing on
    the same nonces lock them in one order and never deadlock."""
    ordered = sorted(uses)
    rows = await conn.fetch(
        """
        WITH fast AS (SELECT set_config('synchronous_commit', 'off', true))
        INSERT INTO request_nonces AS r (keyid, nonce, expires_at)
        SELECT u.keyid, u.nonce, u.now + make_interval(secs => $4)
        FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
            AS u(keyid, nonce, now, i), fast
        ORDER BY u.i
        ON CONFLICT (keyid, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at
            WHERE r.expires_at <= EXCLUDED.expires_at - make_interval(secs => $4)
        RETURNING r.keyid, r.nonce
        """,
        [u[0] for u in ordered],
        [u[1] for u in ordered],
        [u[2] for u in ordered],
        ttl_seconds,
    )
    return {(r["keyid"], r["nonce"]) for r in rows}


PURGE_BATCH = 1000


async def purge_expired(conn: Any, now: datetime, batch: int = PURGE_BATCH) -> int:
    """Delete the nonces expired at `now`; return how many went.

    Each statement deletes at most `batch` rows in its own short transaction, and skips
    rows another replica's purge (or a `remember`) holds, so replicas purging at once
    neither wait for each other nor delete a row twice.
    """
    total = 0
    while True:
        gone = int(
            await conn.fetchval(
                """
                WITH gone AS (
                    DELETE FROM request_nonces WHERE (keyid, nonce) IN (
                        SELECT keyid, nonce FROM request_nonces WHERE expires_at <= $1
                        LIMIT $2 FOR UPDATE SKIP LOCKED)
                    RETURNING 1
                )
                SELECT count(*) FROM gone
                """,
                now,
                batch,
            )
        )
        total += gone
        if gone < batch:
            return total
