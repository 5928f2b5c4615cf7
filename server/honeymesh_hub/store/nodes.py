"""Nodes and their keys (PROTOCOL.md section 5)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

NODE_COLUMNS = (
    "n.id, n.tenant_id, n.name, n.labels, n.trusted, n.revoked_at, n.created_at,"
    " (SELECT k.keyid FROM node_keys k WHERE k.node_id = n.id AND k.rotated_at IS NULL) AS keyid"
)


async def insert_node(
    conn: Any,
    *,
    node_id: UUID,
    tenant_id: UUID,
    name: str,
    labels: Mapping[str, str],
    enrolled_with: UUID,
    now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO nodes (id, tenant_id, name, labels, enrolled_with, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        node_id,
        tenant_id,
        name,
        dict(labels),
        enrolled_with,
        now,
    )


async def insert_key(
    conn: Any, *, keyid: str, node_id: UUID, public_key: bytes, now: datetime
) -> bool:
    """False when the public key (or its id) is already known to the hub."""
    row = await conn.fetchrow(
        "INSERT INTO node_keys (keyid, node_id, public_key, created_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING RETURNING keyid",
        keyid,
        node_id,
        public_key,
        now,
    )
    return row is not None


async def key_exists(conn: Any, keyid: str) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM node_keys WHERE keyid = $1)", keyid
    )
    return found


async def get(conn: Any, node_id: UUID, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE OF n" if for_update else ""
    return await conn.fetchrow(f"SELECT {NODE_COLUMNS} FROM nodes n WHERE n.id = $1{lock}", node_id)


async def list_nodes(conn: Any, tenant_id: UUID | None) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        f"SELECT {NODE_COLUMNS} FROM nodes n WHERE ($1::uuid IS NULL OR n.tenant_id = $1)"
        " ORDER BY n.created_at, n.id",
        tenant_id,
    )
    return rows


async def revoke(conn: Any, node_id: UUID, now: datetime) -> Any:
    await conn.execute(
        "UPDATE nodes SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1", node_id, now
    )
    return await get(conn, node_id)


async def set_trusted(conn: Any, node_id: UUID, trusted: bool) -> Any:
    await conn.execute("UPDATE nodes SET trusted = $2 WHERE id = $1", node_id, trusted)
    return await get(conn, node_id)


async def keys_of(conn: Any, node_id: UUID) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        "SELECT keyid, public_key, created_at, rotated_at, grace_until, replaced_by"
        " FROM node_keys WHERE node_id = $1 ORDER BY created_at",
        node_id,
    )
    return rows


async def current_key_for_update(conn: Any, node_id: UUID) -> Any:
    return await conn.fetchrow(
        "SELECT keyid, public_key, created_at FROM node_keys"
        " WHERE node_id = $1 AND rotated_at IS NULL FOR UPDATE",
        node_id,
    )


async def key_by_id(conn: Any, keyid: str) -> Any:
    return await conn.fetchrow(
        "SELECT k.keyid, k.public_key, k.node_id, n.tenant_id, k.created_at, k.rotated_at,"
        " k.grace_until, k.replaced_by, n.revoked_at"
        " FROM node_keys k JOIN nodes n ON n.id = k.node_id WHERE k.keyid = $1",
        keyid,
    )


async def retire_key(
    conn: Any, *, keyid: str, replaced_by: str, now: datetime, grace_until: datetime
) -> None:
    await conn.execute(
        "UPDATE node_keys SET rotated_at = $2, grace_until = $3, replaced_by = $4 WHERE keyid = $1",
        keyid,
        now,
        grace_until,
        replaced_by,
    )
