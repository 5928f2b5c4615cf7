"""Reads of a key with its node and tenant, for the request gates."""

from __future__ import annotations

from typing import Any

from ..entitlements import NodeIdentity, TenantState, effective_limits

_IDENTITY_SQL = """
SELECT k.keyid, k.public_key, k.rotated_at, k.grace_until,
       n.id AS node_id, n.name AS node_name, n.trusted, n.revoked_at AS node_revoked_at,
       t.id AS tenant_id, t.plan, t.status, t.expires_at, t.limits, t.visibility_epoch
FROM node_keys k
JOIN nodes n ON n.id = k.node_id
JOIN tenants t ON t.id = n.tenant_id
WHERE k.keyid = $1
"""


def tenant_state(row: Any) -> TenantState:
    return TenantState(
        tenant_id=row["tenant_id"],
        plan=row["plan"],
        status=row["status"],
        expires_at=row["expires_at"],
        limits=effective_limits(row["plan"], row["limits"]),
        visibility_epoch=row["visibility_epoch"],
    )


async def identity_by_keyid(conn: Any, keyid: str) -> NodeIdentity | None:
    row = await conn.fetchrow(_IDENTITY_SQL, keyid)
    if row is None:
        return None
    return NodeIdentity(
        keyid=row["keyid"],
        public_key=bytes(row["public_key"]),
        key_rotated_at=row["rotated_at"],
        key_grace_until=row["grace_until"],
        node_id=row["node_id"],
        node_name=row["node_name"],
        trusted=row["trusted"],
        node_revoked_at=row["node_revoked_at"],
        tenant=tenant_state(row),
    )
