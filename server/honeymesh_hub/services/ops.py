"""What /readyz and /metrics ask of the database."""

from __future__ import annotations

import asyncio
from typing import Any

from ..store import ops as ops_store

READY_SECONDS = 2.0


async def database_ready(pool: Any) -> bool:
    """Whether the database answers within READY_SECONDS; any failure is a no."""
    try:
        async with asyncio.timeout(READY_SECONDS), pool.acquire() as conn:
            await ops_store.ping(conn)
    except Exception:  # any failure to answer means not ready
        return False
    return True


async def queue_depth(pool: Any) -> dict[str, int]:
    async with pool.acquire() as conn:
        return await ops_store.queue_depth(conn)
