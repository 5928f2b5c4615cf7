"""Node enrollment and key rotation (PROTOCOL.md section 5)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from honeymesh_client.protocol.keys import keyid_of

from ..entitlements import TenantState, effective_limits
from ..errors import Conflict, Forbidden, NotFound
from ..store import audit
from ..store import enrollment as enrollment_store
from ..store import nodes as node_store
from ..store import tenants as tenant_store
from ..tokens import hash_token

ROTATION_GRACE = timedelta(seconds=300)


async def enroll(
    pool: Any,
    now: datetime,
    *,
    token: str,
    public_key: bytes,
    name: str,
    labels: dict[str, str],
) -> dict[str, str]:
    """Spend one use of the token and create the node with its first key, atomically.

    Any refusal raises inside the transaction, so it rolls back and spends no use.
    """
    keyid = keyid_of(public_key)
    node_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        spent = await enrollment_store.spend(conn, hash_token(token), now)
        if spent is None:
            raise Forbidden("The enrollment token is unknown, spent, revoked or expired.")
        tenant_id = spent["tenant_id"]
        # The tenant row lock serialises enrollments of one tenant for the node count.
        tenant = await tenant_store.get(conn, tenant_id, for_update=True)
        limits = effective_limits(tenant["plan"], tenant["limits"])
        TenantState(
            tenant_id, tenant["plan"], tenant["status"], tenant["expires_at"], limits
        ).check_active(now)
        if await node_store.key_exists(conn, keyid):
            raise Conflict("This public key is already known to the hub.")
        if await tenant_store.count_nodes(conn, tenant_id) >= limits["max_nodes"]:
            raise Forbidden(
                f"The tenant has reached its node limit ({limits['max_nodes']}).",
                code="node_limit_reached",
            )
        await node_store.insert_node(
            conn,
            node_id=node_id,
            tenant_id=tenant_id,
            name=name,
            labels=labels,
            enrolled_with=spent["id"],
            now=now,
        )
        if not await node_store.insert_key(
            conn, keyid=keyid, node_id=node_id, public_key=public_key, now=now
        ):
            raise Conflict("This public key is already known to the hub.")
        await audit.append(
            conn,
            now=now,
            actor=f"node:{node_id}",
            action="node.enroll",
            target=f"node:{node_id}",
            details={
                "tenant_id": str(tenant_id),
                "keyid": keyid,
                "token_id": str(spent["id"]),
                "name": name,
            },
        )
    return {"node_id": str(node_id), "tenant_id": str(tenant_id), "keyid": keyid}


async def rotate_key(
    pool: Any,
    now: datetime,
    *,
    node_id: uuid.UUID,
    signing_keyid: str,
    public_key: bytes,
) -> dict[str, str]:
    """Install `public_key` as the node's key; the signing key keeps 300 s of grace.

    The node's row lock serialises racing rotations; the loser, reading the keys only
    once it holds the lock, finds another current key and gets 409. (Locking the current
    key's row alone would not do: under READ COMMITTED the loser's re-check of
    `rotated_at IS NULL` drops that row, and the new one is not in its snapshot yet.)
    Repeating the rotation that just succeeded, signed by the key it replaced, is
    answered 200 and changes nothing.
    """
    new_keyid = keyid_of(public_key)
    async with pool.acquire() as conn, conn.transaction():
        if await node_store.get(conn, node_id, for_update=True) is None:
            raise NotFound("No such node.")
        current = await node_store.current_key_for_update(conn, node_id)
        if current is None:
            raise NotFound("This node has no current key.")
        keys = {k["keyid"]: k for k in await node_store.keys_of(conn, node_id)}
        signing = keys.get(signing_keyid)
        if (
            current["keyid"] == new_keyid
            and signing is not None
            and signing["replaced_by"] == new_keyid
            and signing["grace_until"] is not None
            and now < signing["grace_until"]
        ):
            return {"keyid": new_keyid}
        if current["keyid"] != signing_keyid:
            raise Conflict("Only the node's current key may rotate it.")
        if any(k["grace_until"] is not None and now < k["grace_until"] for k in keys.values()):
            raise Conflict("A rotation's grace period is still running; retry after it ends.")
        if await node_store.key_exists(conn, new_keyid):
            raise Conflict("This public key is already known to the hub.")
        # Retire first: the one-current-key index admits the new key only then
        # (the replaced_by reference is checked at commit).
        await node_store.retire_key(
            conn,
            keyid=signing_keyid,
            replaced_by=new_keyid,
            now=now,
            grace_until=now + ROTATION_GRACE,
        )
        if not await node_store.insert_key(
            conn, keyid=new_keyid, node_id=node_id, public_key=public_key, now=now
        ):
            raise Conflict("This public key is already known to the hub.")
        await audit.append(
            conn,
            now=now,
            actor=f"node:{node_id}",
            action="key.rotate",
            target=f"node:{node_id}",
            details={"old_keyid": signing_keyid, "new_keyid": new_keyid},
        )
    return {"keyid": new_keyid}


async def self_view(pool: Any, node_id: uuid.UUID) -> Any:
    async with pool.acquire() as conn:
        return await node_store.get(conn, node_id)


async def key_view(pool: Any, keyid: str) -> Any:
    async with pool.acquire() as conn:
        row = await node_store.key_by_id(conn, keyid)
    if row is None:
        raise NotFound("No such key.")
    return row
