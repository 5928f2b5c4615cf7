"""Enrollment tokens: hashed, counted, spent atomically (PROTOCOL.md sections 4-5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

_COLUMNS = "id, tenant_id, max_uses, uses, expires_at, revoked_at, created_at"


async def insert(
    conn: Any,
    *,
    token_id: UUID,
    tenant_id: UUID,
    token_hash: bytes,
    max_uses: int,
    expires_at: datetime,
    now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO enrollment_tokens (id, tenant_id, token_hash, max_uses, expires_at,"
        " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        token_id,
        tenant_id,
        token_hash,
        max_uses,
        expires_at,
        now,
    )


async def list_for_tenant(conn: Any, tenant_id: UUID) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM enrollment_tokens WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id,
    )
    return rows


async def revoke(conn: Any, token_id: UUID, now: datetime) -> Any:
    return await conn.fetchrow(
        "UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1"
        " RETURNING id, tenant_id",
        token_id,
        now,
    )


async def spend(conn: Any, token_hash: bytes, now: datetime) -> Any:
    """Spend one use, atomically; None when the token is unknown, spent, expired or revoked.

    The row lock taken by UPDATE serialises racing enrollments: `max_uses` of them
    succeed, never more. The caller's transaction rolls the use back if the
    enrollment fails later (a refused enrollment spends no use).
    """
    return await conn.fetchrow(
        "UPDATE enrollment_tokens SET uses = uses + 1"
        " WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses"
        " RETURNING id, tenant_id",
        token_hash,
        now,
    )
