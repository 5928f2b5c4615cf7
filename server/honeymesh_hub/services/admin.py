"""Operator use cases (PROTOCOL.md section 4). Each owns its transaction and audits.

Bodies arrive shape-checked by their JSON Schema; the checks here are the ones a
schema cannot make (existence, cross-field rules, the tenant's own limits).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from honeymesh_client.protocol.times import read_rfc3339

from .. import views
from ..clock import rfc3339
from ..config import PolicyConfig
from ..entitlements import TenantState, effective_limits, narrows
from ..errors import Conflict, NotFound, ValidationFailed
from ..store import audit
from ..store import enrollment as enrollment_store
from ..store import nodes as node_store
from ..store import readers as reader_store
from ..store import tenants as tenant_store
from ..store import tokens as token_store
from ..tokens import hash_token, new_token
from . import decisions

log = logging.getLogger("honeymesh.admin")

MAX_ENROLLMENT_TTL = 7 * 86400
MAX_LIVE_READER_KEYS = 100
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _invalid(pointer: str, detail: str) -> ValidationFailed:
    return ValidationFailed(detail, errors=[{"pointer": pointer, "detail": detail}])


def parse_time(value: str | None, pointer: str) -> datetime | None:
    """An RFC 3339 time with Z or an offset, within what PostgreSQL and RFC 3339 UTC
    strings can hold; anything else is a 422, never a 500 from the database."""
    if value is None:
        return None
    try:
        parsed = read_rfc3339(value)
    except ValueError as exc:
        raise _invalid(pointer, str(exc)) from None
    if not _EARLIEST <= parsed < _LATEST:
        raise _invalid(pointer, "must be between 1970 and 9999")
    return parsed


async def create_tenant(
    pool: Any, now: datetime, actor: str, body: dict[str, Any]
) -> dict[str, Any]:
    tenant_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        row = await tenant_store.insert(
            conn,
            tenant_id=tenant_id,
            name=body["name"],
            plan=body["plan"],
            expires_at=parse_time(body.get("expires_at"), "/expires_at"),
            limits=body.get("limits", {}),
            now=now,
        )
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="tenant.create",
            target=f"tenant:{tenant_id}",
            details={"plan": body["plan"], "name": body["name"]},
        )
    return views.tenant(row)


async def get_tenant(pool: Any, tenant_id: uuid.UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await tenant_store.get(conn, tenant_id)
    if row is None:
        raise NotFound("No such tenant.")
    return views.tenant(row)


async def patch_tenant(
    pool: Any, now: datetime, actor: str, tenant_id: uuid.UUID, body: dict[str, Any]
) -> dict[str, Any]:
    changes: dict[str, Any] = {k: body[k] for k in ("plan", "status", "limits") if k in body}
    if "expires_at" in body:
        changes["expires_at"] = parse_time(body["expires_at"], "/expires_at")
    async with pool.acquire() as conn, conn.transaction():
        old = await tenant_store.get(conn, tenant_id, for_update=True)
        if old is None:
            raise NotFound("No such tenant.")
        before = _tenant_state(old, {})
        shrinks = narrows(before, _tenant_state(old, changes), now)
        row = await tenant_store.update(conn, tenant_id, changes, now, narrows=shrinks)
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="tenant.update",
            target=f"tenant:{tenant_id}",
            reason=body.get("reason"),
            details={k: (rfc3339(v) if isinstance(v, datetime) else v) for k, v in changes.items()},
        )
    return views.tenant(row)


def _tenant_state(row: Any, changes: dict[str, Any]) -> TenantState:
    merged = {k: changes.get(k, row[k]) for k in ("plan", "status", "expires_at", "limits")}
    limits = effective_limits(merged["plan"], merged["limits"])
    return TenantState(row["id"], merged["plan"], merged["status"], merged["expires_at"], limits)


async def create_enrollment_token(
    pool: Any, now: datetime, actor: str, tenant_id: uuid.UUID, body: dict[str, Any]
) -> dict[str, Any]:
    ttl = body.get("ttl_seconds", 3600)
    max_uses = body.get("max_uses", 1)
    if not 1 <= ttl <= MAX_ENROLLMENT_TTL:
        raise _invalid("/ttl_seconds", "must be between 1 and 604800 (7 days)")
    token = new_token("enrollment")
    token_id = uuid.uuid4()
    expires_at = now + timedelta(seconds=ttl)
    async with pool.acquire() as conn, conn.transaction():
        tenant = await tenant_store.get(conn, tenant_id)
        if tenant is None:
            raise NotFound("No such tenant.")
        max_nodes = effective_limits(tenant["plan"], tenant["limits"])["max_nodes"]
        if not 1 <= max_uses <= max_nodes:
            raise _invalid(
                "/max_uses", f"must be between 1 and the tenant's max_nodes ({max_nodes})"
            )
        await enrollment_store.insert(
            conn,
            token_id=token_id,
            tenant_id=tenant_id,
            token_hash=hash_token(token),
            max_uses=max_uses,
            expires_at=expires_at,
            now=now,
        )
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="enrollment_token.create",
            target=f"enrollment_token:{token_id}",
            details={"tenant_id": str(tenant_id), "max_uses": max_uses, "ttl_seconds": ttl},
        )
    return {"token_id": str(token_id), "token": token, "expires_at": rfc3339(expires_at)}


async def list_enrollment_tokens(pool: Any, tenant_id: uuid.UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        if await tenant_store.get(conn, tenant_id) is None:
            raise NotFound("No such tenant.")
        rows = await enrollment_store.list_for_tenant(conn, tenant_id)
    return {"tokens": [views.enrollment_token(r) for r in rows]}


async def revoke_enrollment_token(
    pool: Any, now: datetime, actor: str, token_id: uuid.UUID
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await enrollment_store.revoke(conn, token_id, now)
        if row is None:
            raise NotFound("No such enrollment token.")
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="enrollment_token.revoke",
            target=f"enrollment_token:{token_id}",
            details={"tenant_id": str(row["tenant_id"])},
        )


async def create_api_token(
    conn: Any,
    now: datetime,
    actor: str,
    *,
    role: str,
    scope: str | None,
    name: str,
    expires_at: datetime | None,
) -> dict[str, str]:
    """Make an admin or reviewer token; the caller owns the transaction."""
    if role == "admin" and scope is not None:
        raise _invalid("/scope", "an admin token has no scope")
    if role == "reviewer" and scope is None:
        raise _invalid("/scope", "a reviewer token needs a scope: mesh or a tenant id")
    scope_kind: str | None = None
    scope_tenant: uuid.UUID | None = None
    if scope == "mesh":
        scope_kind = "mesh"
    elif scope is not None:
        try:
            scope_tenant = uuid.UUID(scope)
        except ValueError:
            raise _invalid("/scope", "must be mesh or a tenant id") from None
        if await tenant_store.get(conn, scope_tenant) is None:
            raise _invalid("/scope", "no such tenant")
        scope_kind = "tenant"
    if expires_at is not None and expires_at <= now:
        raise _invalid("/expires_at", "must be in the future")
    token = new_token(role)
    token_id = uuid.uuid4()
    await token_store.insert(
        conn,
        token_id=token_id,
        role=role,
        scope=scope_kind,
        scope_tenant_id=scope_tenant,
        name=name,
        token_hash=hash_token(token),
        expires_at=expires_at,
        now=now,
    )
    await audit.append(
        conn,
        now=now,
        actor=actor,
        action="token.create",
        target=f"token:{token_id}",
        details={"role": role, "scope": scope, "name": name},
    )
    return {"token_id": str(token_id), "token": token}


async def create_token(
    pool: Any, now: datetime, actor: str, body: dict[str, Any]
) -> dict[str, str]:
    async with pool.acquire() as conn, conn.transaction():
        return await create_api_token(
            conn,
            now,
            actor,
            role=body["role"],
            scope=body.get("scope"),
            name=body["name"],
            expires_at=parse_time(body.get("expires_at"), "/expires_at"),
        )


async def revoke_token(pool: Any, now: datetime, actor: str, token_id: uuid.UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if not await token_store.revoke(conn, token_id, now):
            raise NotFound("No such token.")
        await audit.append(
            conn, now=now, actor=actor, action="token.revoke", target=f"token:{token_id}"
        )


async def create_reader_key(
    pool: Any, now: datetime, actor: str, tenant_id: uuid.UUID, body: dict[str, Any]
) -> dict[str, Any]:
    """A reader key for one tenant (PROTOCOL.md 4 r2), shown this once.

    The tenant row is locked while the live keys are counted, so concurrent creates
    cannot pass MAX_LIVE_READER_KEYS together.
    """
    expires_at = parse_time(body.get("expires_at"), "/expires_at")
    if expires_at is not None and expires_at <= now:
        raise _invalid("/expires_at", "must be in the future")
    key = new_token("reader")
    key_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        if await tenant_store.get(conn, tenant_id, for_update=True) is None:
            raise NotFound("No such tenant.")
        if await reader_store.count_live(conn, tenant_id, now) >= MAX_LIVE_READER_KEYS:
            raise Conflict(
                f"The tenant has {MAX_LIVE_READER_KEYS} live reader keys, the most it may"
                " hold; revoke one first."
            )
        row = await reader_store.insert(
            conn,
            key_id=key_id,
            tenant_id=tenant_id,
            name=body["name"],
            key_hash=hash_token(key),
            expires_at=expires_at,
            now=now,
        )
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="reader_key.create",
            target=f"reader_key:{key_id}",
            details={
                "tenant_id": str(tenant_id),
                "name": body["name"],
                "expires_at": rfc3339(expires_at),
            },
        )
    return {
        "key_id": str(key_id),
        "key": key,
        "name": row["name"],
        "tenant_id": str(tenant_id),
        "created_at": rfc3339(row["created_at"]),
        "expires_at": rfc3339(row["expires_at"]),
    }


async def list_reader_keys(pool: Any, tenant_id: uuid.UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        if await tenant_store.get(conn, tenant_id) is None:
            raise NotFound("No such tenant.")
        rows = await reader_store.list_for_tenant(conn, tenant_id)
    return {"reader_keys": [views.reader_key(r) for r in rows]}


async def revoke_reader_key(pool: Any, now: datetime, actor: str, key_id: uuid.UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await reader_store.revoke(conn, key_id, now)
        if row is None:
            raise NotFound("No such reader key.")
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="reader_key.revoke",
            target=f"reader_key:{key_id}",
            details={"tenant_id": str(row["tenant_id"])},
        )


async def list_nodes(pool: Any, tenant_id: uuid.UUID | None) -> dict[str, Any]:
    async with pool.acquire() as conn:
        # An unknown tenant is a 404, as for its enrollment tokens: an empty list would
        # hide a mistyped id (PROTOCOL.md section 4 is silent here).
        if tenant_id is not None and await tenant_store.get(conn, tenant_id) is None:
            raise NotFound("No such tenant.")
        rows = await node_store.list_nodes(conn, tenant_id)
    return {"nodes": [views.node(r) for r in rows]}


async def revoke_node(
    pool: Any,
    now: datetime,
    actor: str,
    node_id: uuid.UUID,
    reason: str | None,
    policy: PolicyConfig,
) -> dict[str, Any]:
    """Revoke a node; its signals stop counting, and the rule-made approvals that no
    longer hold are retracted before the answer (PROTOCOL.md section 4)."""
    async with pool.acquire() as conn, conn.transaction():
        if await node_store.get(conn, node_id, for_update=True) is None:
            raise NotFound("No such node.")
        row = await node_store.revoke(conn, node_id, now)
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="node.revoke",
            target=f"node:{node_id}",
            reason=reason,
        )
        await decisions.revalidate_node(conn, node_id, now, policy, actor)
    return views.node(row)


async def set_node_trusted(
    pool: Any,
    now: datetime,
    actor: str,
    node_id: uuid.UUID,
    trusted: bool,
    reason: str | None,
    policy: PolicyConfig,
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        if await node_store.get(conn, node_id, for_update=True) is None:
            raise NotFound("No such node.")
        row = await node_store.set_trusted(conn, node_id, trusted)
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="node.trust" if trusted else "node.untrust",
            target=f"node:{node_id}",
            reason=reason,
        )
        if not trusted:
            await decisions.revalidate_node(conn, node_id, now, policy, actor)
    return views.node(row)


async def audit_page(pool: Any, after: int, limit: int) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await audit.page(conn, after, limit + 1)
    out: dict[str, Any] = {"entries": [views.audit_entry(r) for r in rows[:limit]]}
    if len(rows) > limit:
        out["next"] = str(rows[limit - 1]["seq"])
    return out
