"""Tenants and their entitlements (PROTOCOL.md section 4)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

_COLUMNS = "id, name, plan, status, expires_at, limits, created_at, updated_at"


async def insert(
    conn: Any,
    *,
    tenant_id: UUID,
    name: str,
    plan: str,
    expires_at: datetime | None,
    limits: Mapping[str, int],
    now: datetime,
) -> Any:
    return await conn.fetchrow(
        f"INSERT INTO tenants ({_COLUMNS}) VALUES ($1, $2, $3, 'active', $4, $5, $6, $6)"
        f" RETURNING {_COLUMNS}",
        tenant_id,
        name,
        plan,
        expires_at,
        dict(limits),
        now,
    )


async def get(conn: Any, tenant_id: UUID, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenants WHERE id = $1{lock}", tenant_id)


async def update(
    conn: Any, tenant_id: UUID, changes: Mapping[str, Any], now: datetime, *, narrows: bool
) -> Any:
    """Apply a PATCH: only the members present change (expires_at may become null);
    `narrows` moves the visibility epoch (what the tenant's nodes may see shrank)."""
    return await conn.fetchrow(
        "UPDATE tenants SET updated_at = $2, plan = coalesce($3, plan),"
        " status = coalesce($4, status), limits = coalesce($5, limits),"
        " expires_at = CASE WHEN $6 THEN $7 ELSE expires_at END,"
        " visibility_epoch = visibility_epoch + CASE WHEN $8 THEN 1 ELSE 0 END"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        tenant_id,
        now,
        changes.get("plan"),
        changes.get("status"),
        changes.get("limits"),
        "expires_at" in changes,
        changes.get("expires_at"),
        narrows,
    )


async def count_nodes(conn: Any, tenant_id: UUID) -> int:
    n: int = await conn.fetchval(
        "SELECT count(*) FROM nodes WHERE tenant_id = $1 AND revoked_at IS NULL", tenant_id
    )
    return n
