"""Reads for the operational endpoints (PROTOCOL.md section 10)."""

from __future__ import annotations

from typing import Any


async def ping(conn: Any) -> None:
    await conn.fetchval("SELECT 1")


async def queue_depth(conn: Any) -> dict[str, int]:
    """Candidates by state."""
    rows = await conn.fetch("SELECT state, count(*) AS n FROM candidates GROUP BY state")
    return {r["state"]: r["n"] for r in rows}
