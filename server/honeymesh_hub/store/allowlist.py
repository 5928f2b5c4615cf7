"""Ranges that must never be blocked (PROTOCOL.md section 4)."""

from __future__ import annotations

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
