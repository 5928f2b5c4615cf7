"""Reader keys (PROTOCOL.md sections 4 and 13, r2), stored as hashes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ..entitlements import ReaderKey, TenantState, effective_limits

_COLUMNS = (
    "id, tenant_id, name, created_at, expires_at, revoked_at, last_used_at,"
    " last_seen_at, polls, decisions_served"
)

# A key with its tenant, for the request gate: one query.
_BY_HASH_SQL = """
SELECT r.id, r.name, r.key_hash, r.expires_at, r.revoked_at, r.last_used_at,
       t.id AS tenant_id, t.plan, t.status, t.expires_at AS tenant_expires_at, t.limits,
       t.visibility_epoch
FROM reader_keys r
JOIN tenants t ON t.id = r.tenant_id
WHERE r.key_hash = $1
"""


async def by_hash(conn: Any, key_hash: bytes) -> ReaderKey | None:
    row = await conn.fetchrow(_BY_HASH_SQL, key_hash)
    if row is None:
        return None
    return ReaderKey(
        key_id=row["id"],
        name=row["name"],
        key_hash=bytes(row["key_hash"]),
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        tenant=TenantState(
            tenant_id=row["tenant_id"],
            plan=row["plan"],
            status=row["status"],
            expires_at=row["tenant_expires_at"],
            limits=effective_limits(row["plan"], row["limits"]),
            visibility_epoch=row["visibility_epoch"],
        ),
    )


async def count_live(conn: Any, tenant_id: UUID, now: datetime) -> int:
    """Keys of the tenant neither revoked nor expired at `now`."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM reader_keys WHERE tenant_id = $1 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > $2)",
        tenant_id,
        now,
    )
    return count


async def insert(
    conn: Any,
    *,
    key_id: UUID,
    tenant_id: UUID,
    name: str,
    key_hash: bytes,
    expires_at: datetime | None,
    now: datetime,
) -> Any:
    return await conn.fetchrow(
        "INSERT INTO reader_keys (id, tenant_id, name, key_hash, created_at, expires_at)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
        key_id,
        tenant_id,
        name,
        key_hash,
        now,
        expires_at,
    )


async def list_for_tenant(conn: Any, tenant_id: UUID) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM reader_keys WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id,
    )
    return rows


async def revoke(conn: Any, key_id: UUID, now: datetime) -> Any:
    """Revoke a key (an already revoked one keeps its first time); None if unknown."""
    return await conn.fetchrow(
        "UPDATE reader_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1"
        " RETURNING id, tenant_id",
        key_id,
        now,
    )


async def touch(conn: Any, key_id: UUID, now: datetime, every: timedelta) -> bool:
    """Record a use, unless one was recorded less than `every` ago (any replica)."""
    row = await conn.fetchrow(
        "UPDATE reader_keys SET last_used_at = $2 WHERE id = $1"
        " AND (last_used_at IS NULL OR last_used_at <= $2::timestamptz - $3::interval)"
        " RETURNING id",
        key_id,
        now,
        every,
    )
    return row is not None


# Each replica's counts since its last flush, added in one statement: a key revoked
# or deleted meanwhile matches no row and its counts go. Rows are locked in key order
# (the arrays come sorted), so concurrent flushes of replicas never deadlock each other.
_ADD_USAGE_SQL = """
UPDATE reader_keys r
SET polls = r.polls + u.polls,
    decisions_served = r.decisions_served + u.decisions,
    last_seen_at = greatest(r.last_seen_at, u.seen)
FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::timestamptz[])
    AS u(id, polls, decisions, seen)
WHERE r.id = u.id
"""


async def add_usage(
    conn: Any,
    key_ids: list[UUID],
    polls: list[int],
    decisions: list[int],
    seen: list[datetime],
) -> None:
    await conn.execute(_ADD_USAGE_SQL, key_ids, polls, decisions, seen)
