"""Request nonces in PostgreSQL: the fallback while Redis is unreachable."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


async def remember(conn: Any, keyid: str, nonce: str, now: datetime, ttl_seconds: int) -> bool:
    """True when the nonce is new for that key (or its earlier use has expired)."""
    row = await conn.fetchrow(
        """
        INSERT INTO request_nonces AS r (keyid, nonce, expires_at) VALUES ($1, $2, $3)
        ON CONFLICT (keyid, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at
            WHERE r.expires_at <= $4
        RETURNING 1
        """,
        keyid,
        nonce,
        now + timedelta(seconds=ttl_seconds),
        now,
    )
    return row is not None


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
