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


async def purge_expired(conn: Any, now: datetime) -> None:
    await conn.execute("DELETE FROM request_nonces WHERE expires_at <= $1", now)
