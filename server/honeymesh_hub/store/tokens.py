"""Admin and reviewer bearer tokens (PROTOCOL.md section 4), stored as hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID


async def by_hash(conn: Any, token_hash: bytes) -> Any:
    return await conn.fetchrow(
        "SELECT id, role, scope, scope_tenant_id, name, token_hash, expires_at, revoked_at"
        " FROM api_tokens WHERE token_hash = $1",
        token_hash,
    )


async def insert(
    conn: Any,
    *,
    token_id: UUID,
    role: str,
    scope: str | None,
    scope_tenant_id: UUID | None,
    name: str,
    token_hash: bytes,
    expires_at: datetime | None,
    now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO api_tokens (id, role, scope, scope_tenant_id, name, token_hash,"
        " expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        token_id,
        role,
        scope,
        scope_tenant_id,
        name,
        token_hash,
        expires_at,
        now,
    )


async def revoke(conn: Any, token_id: UUID, now: datetime) -> bool:
    row = await conn.fetchrow(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING id",
        token_id,
        now,
    )
    return row is not None
