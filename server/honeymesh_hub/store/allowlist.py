"""Ranges that must never be blocked (PROTOCOL.md section 4)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network
from typing import Any
from uuid import UUID

Network = IPv4Network | IPv6Network


async def all_entries(conn: Any) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        "SELECT id, cidr, reason, created_at FROM allowlist ORDER BY created_at, cidr"
    )
    return rows


async def insert(conn: Any, *, entry_id: UUID, cidr: Network, reason: str, now: datetime) -> Any:
    """The new entry, or None when that exact range is already listed."""
    return await conn.fetchrow(
        "INSERT INTO allowlist (id, cidr, reason, created_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (cidr) DO NOTHING RETURNING id, cidr, reason, created_at",
        entry_id,
        cidr,
        reason,
        now,
    )


async def delete(conn: Any, entry_id: UUID) -> Any:
    return await conn.fetchrow(
        "DELETE FROM allowlist WHERE id = $1 RETURNING id, cidr, reason", entry_id
    )


async def current_xid(conn: Any) -> int:
    return int(await conn.fetchval("SELECT pg_current_xact_id()::text"))


async def wait_for_older_transactions(conn: Any, xid: int, patience: float = 10.0) -> bool:
    """Until every transaction older than `xid` has ended, anywhere; False past
    `patience` seconds.

    Polls the snapshot's xmin, as the feed reads it: a publish statement lasts
    milliseconds, so this returns after a few polls.
    """
    deadline = time.monotonic() + patience
    delay = 0.002
    while True:
        xmin = int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
        if xmin > xid:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def covers(conn: Any, candidate_ids: list[UUID]) -> set[UUID]:
    """The candidates among these that overlap an allowlisted range, read now.

    Run under the candidates' locks, in a statement of its own: its snapshot follows
    any allowlist entry whose transaction the lock waited for.
    """
    rows = await conn.fetch(
        "SELECT c.id FROM candidates c WHERE c.id = any($1::uuid[])"
        " AND EXISTS (SELECT 1 FROM allowlist al WHERE al.cidr && c.network)",
        candidate_ids,
    )
    return {r["id"] for r in rows}
