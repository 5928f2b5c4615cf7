"""Operator API (PROTOCOL.md section 4): thin handlers over services.admin."""

from __future__ import annotations

from aiohttp import web

from .. import state
from ..auth import authenticate_token
from ..bodies import check, json_body, parse_json, read_body
from ..services import admin, allowlist
from .common import json_response, now, page_limit, path_uuid, query_int, query_uuid

routes = web.RouteTableDef()


async def _admin(request: web.Request) -> str:
    return (await authenticate_token(request, "admin")).actor


@routes.post("/v1/admin/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    actor = await _admin(request)
    body = await json_body(request, "tenant-create")
    result = await admin.create_tenant(request.app[state.POOL], now(request), actor, body)
    return json_response(result, status=201)


@routes.get("/v1/admin/tenants/{tenant_id}")
async def get_tenant(request: web.Request) -> web.Response:
    await _admin(request)
    tenant_id = path_uuid(request, "tenant_id", "tenant")
    return json_response(await admin.get_tenant(request.app[state.POOL], tenant_id))


@routes.patch("/v1/admin/tenants/{tenant_id}")
async def patch_tenant(request: web.Request) -> web.Response:
    actor = await _admin(request)
    tenant_id = path_uuid(request, "tenant_id", "tenant")
    body = await json_body(request, "tenant-patch")
    result = await admin.patch_tenant(request.app[state.POOL], now(request), actor, tenant_id, body)
    return json_response(result)


@routes.post("/v1/admin/tenants/{tenant_id}/enrollment-tokens")
async def create_enrollment_token(request: web.Request) -> web.Response:
    actor = await _admin(request)
    tenant_id = path_uuid(request, "tenant_id", "tenant")
    body = await json_body(request, "enrollment-token-create")
    result = await admin.create_enrollment_token(
        request.app[state.POOL], now(request), actor, tenant_id, body
    )
    return json_response(result, status=201)


@routes.get("/v1/admin/tenants/{tenant_id}/enrollment-tokens")
async def list_enrollment_tokens(request: web.Request) -> web.Response:
    await _admin(request)
    tenant_id = path_uuid(request, "tenant_id", "tenant")
    return json_response(await admin.list_enrollment_tokens(request.app[state.POOL], tenant_id))


@routes.delete("/v1/admin/enrollment-tokens/{token_id}")
async def revoke_enrollment_token(request: web.Request) -> web.Response:
    actor = await _admin(request)
    token_id = path_uuid(request, "token_id", "enrollment token")
    await admin.revoke_enrollment_token(request.app[state.POOL], now(request), actor, token_id)
    return web.Response(status=204)


@routes.post("/v1/admin/tenants/{tenant_id}/reader-keys")
async def create_reader_key(request: web.Request) -> web.Response:
    actor = await _admin(request)
    tenant_id = path_uuid(request, "tenant_id", "tenant")
    body = await json_body(request, "reader-key-create")
    result = await admin.create_reader_key(
        request.app[state.POOL], now(request), actor, tenant_id, body
    )
    return json_response(result, status=201)


@routes.get("/v1/admin/tenants/{tenant_id}/reader-keys")
async def list_reader_keys(request: web.Request) -> web.Response:
    await _admin(request)
    tenant_id = path_uuid(request, "tenant_id", "tenant")
    return json_response(await admin.list_reader_keys(request.app[state.POOL], tenant_id))


@routes.delete("/v1/admin/reader-keys/{key_id}")
async def revoke_reader_key(request: web.Request) -> web.Response:
    actor = await _admin(request)
    key_id = path_uuid(request, "key_id", "reader key")
    await admin.revoke_reader_key(request.app[state.POOL], now(request), actor, key_id)
    # Here at once; every other replica within its cache's TTL (PROTOCOL.md 4 r2).
    request.app[state.READERS].forget_key(key_id)
    return web.Response(status=204)


@routes.post("/v1/admin/tokens")
async def create_token(request: web.Request) -> web.Response:
    actor = await _admin(request)
    body = await json_body(request, "token-create")
    result = await admin.create_token(request.app[state.POOL], now(request), actor, body)
    return json_response(result, status=201)


@routes.delete("/v1/admin/tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    actor = await _admin(request)
    token_id = path_uuid(request, "token_id", "token")
    await admin.revoke_token(request.app[state.POOL], now(request), actor, token_id)
    return web.Response(status=204)


@routes.get("/v1/admin/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    await _admin(request)
    tenant_id = query_uuid(request, "tenant_id")
    return json_response(await admin.list_nodes(request.app[state.POOL], tenant_id))


@routes.post("/v1/admin/nodes/{node_id}/revoke")
async def revoke_node(request: web.Request) -> web.Response:
    actor = await _admin(request)
    node_id = path_uuid(request, "node_id", "node")
    raw = await read_body(request)
    body = {}
    if raw:
        body = parse_json(request, raw)
        check("node-revoke", body)
    result = await admin.revoke_node(
        request.app[state.POOL],
        now(request),
        actor,
        node_id,
        body.get("reason"),
        request.app[state.CONFIG].policy,
    )
    request.app[state.DIRECTORY].forget_node(node_id)
    return json_response(result)


@routes.patch("/v1/admin/nodes/{node_id}")
async def patch_node(request: web.Request) -> web.Response:
    actor = await _admin(request)
    node_id = path_uuid(request, "node_id", "node")
    body = await json_body(request, "node-patch")
    result = await admin.set_node_trusted(
        request.app[state.POOL],
        now(request),
        actor,
        node_id,
        body["trusted"],
        body.get("reason"),
        request.app[state.CONFIG].policy,
    )
    request.app[state.DIRECTORY].forget_node(node_id)
    return json_response(result)


@routes.get("/v1/admin/allowlist")
async def list_allowlist(request: web.Request) -> web.Response:
    await _admin(request)
    return json_response(await allowlist.list_allowlist(request.app[state.POOL]))


@routes.post("/v1/admin/allowlist")
async def add_allowlist(request: web.Request) -> web.Response:
    actor = await _admin(request)
    body = await json_body(request, "allowlist-create")
    result = await allowlist.add_allowlist(request.app[state.POOL], now(request), actor, body)
    return json_response(result, status=201)


@routes.delete("/v1/admin/allowlist/{entry_id}")
async def delete_allowlist(request: web.Request) -> web.Response:
    actor = await _admin(request)
    entry_id = path_uuid(request, "entry_id", "allowlist entry")
    await allowlist.delete_allowlist(request.app[state.POOL], now(request), actor, entry_id)
    return web.Response(status=204)


@routes.get("/v1/admin/audit")
async def audit(request: web.Request) -> web.Response:
    await _admin(request)
    after = query_int(request, "after", 0, 0, 2**62)
    limit = page_limit(request)
    return json_response(await admin.audit_page(request.app[state.POOL], after, limit))
