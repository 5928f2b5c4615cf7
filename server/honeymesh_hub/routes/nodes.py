"""Node identity routes (PROTOCOL.md section 5): enroll, self, key rotation, key lookup."""

from __future__ import annotations

from aiohttp import web

from honeymesh_client.protocol.keys import (
    b64decode_any,
    decode_public_key,
    is_keyid,
    verify_ed25519,
)

from .. import state, views
from ..admission import refuse_enrollment_past_failed_auth
from ..auth import authenticate_new_key, authenticate_node
from ..bodies import check, parse_json, read_body
from ..clientaddress import source_address
from ..errors import HubError, NotFound, ValidationFailed
from ..ratelimit import Limit, per_minute, quota_of, refusal
from ..services import enrollment
from .common import json_response, now

routes = web.RouteTableDef()

ENROLL_PER_MINUTE = 10


def _public_key(text: str, pointer: str) -> bytes:
    try:
        return decode_public_key(text)
    except ValueError:
        detail = "not the standard base64 of a 32-byte Ed25519 public key"
        raise ValidationFailed(detail, errors=[{"pointer": pointer, "detail": detail}]) from None


@routes.post("/v1/nodes/enroll", name="enroll")
async def enroll(request: web.Request) -> web.Response:
    """Enroll a node, proving possession of its key by signing with it.

    Per-address limits first (failed authentications, then 10 enrollments a minute),
    then the body (the key to check the signature with is in it), then the signature,
    then the token.
    """
    app = request.app
    await refuse_enrollment_past_failed_auth(request)
    limit = Limit(per_minute(ENROLL_PER_MINUTE), source_address(request, app[state.CONFIG]))
    admission = await app[state.LIMITER].admit([("enroll", limit, 1)])
    quota = quota_of("enroll", admission.windows)
    if not admission.allowed:
        raise refusal(quota)
    try:
        raw = await read_body(request)
        body = parse_json(request, raw)
        check("enroll", body)
        public_key = _public_key(body["public_key"], "/public_key")
        await authenticate_new_key(request, raw, public_key)
        result = await enrollment.enroll(
            app[state.POOL],
            now(request),
            token=body["token"],
            public_key=public_key,
            name=body["name"],
            labels=body.get("labels", {}),
        )
    except HubError as exc:
        # Every enroll answer carries the RateLimit fields (PROTOCOL.md section 9).
        exc.headers = {**quota.headers(), **exc.headers}
        raise
    return json_response(result, status=201, headers=quota.headers())


@routes.get("/v1/nodes/self")
async def node_self(request: web.Request) -> web.Response:
    caller = await authenticate_node(request, await read_body(request), None)
    row = await enrollment.self_view(request.app[state.POOL], caller.node_id)
    tenant = caller.identity.tenant
    return json_response(
        {
            "node_id": str(caller.node_id),
            "tenant_id": str(caller.tenant_id),
            "name": row["name"],
            "keyid": row["keyid"],
            "trusted": row["trusted"],
            "plan": tenant.plan,
            "features": sorted(tenant.features),
            "limits": dict(tenant.limits),
        }
    )


@routes.post("/v1/nodes/self/keys")
async def rotate_key(request: web.Request) -> web.Response:
    raw = await read_body(request)
    caller = await authenticate_node(request, raw, None)
    body = parse_json(request, raw)
    check("key-rotate", body)
    public_key = _public_key(body["public_key"], "/public_key")
    message = f"honeymesh-key-rotation:v1:{caller.node_id}:{caller.keyid}".encode()
    try:
        proof = b64decode_any(body["proof"])
    except ValueError:
        proof = b""
    if not verify_ed25519(public_key, proof, message):
        detail = "not the new key's signature over the rotation statement"
        raise ValidationFailed(detail, errors=[{"pointer": "/proof", "detail": detail}])
    result = await enrollment.rotate_key(
        request.app[state.POOL],
        now(request),
        node_id=caller.node_id,
        signing_keyid=caller.keyid,
        public_key=public_key,
    )
    request.app[state.DIRECTORY].forget(caller.keyid)
    return json_response(result)


@routes.get("/v1/keys/{keyid}")
async def get_key(request: web.Request) -> web.Response:
    await authenticate_node(request, await read_body(request), None)
    keyid = request.match_info["keyid"]
    if not is_keyid(keyid):
        raise NotFound("No such key.")
    row = await enrollment.key_view(request.app[state.POOL], keyid)
    return json_response(views.key(row))
