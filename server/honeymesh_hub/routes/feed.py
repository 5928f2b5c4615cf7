"""GET /v1/feed and GET /v1/decisions/{id}/provenance (PROTOCOL.md section 8)."""

from __future__ import annotations

import uuid

from aiohttp import web

from .. import state
from ..admission import admit
from ..auth import authenticate_node, verify_node
from ..bodies import read_body
from ..errors import NotFound, RateLimited
from ..ratelimit import Limit, per_minute, quota_of
from ..services import feed
from .common import json_response, path_uuid, query_int

routes = web.RouteTableDef()

MAX_WAITING = 2
# A waiter's slot outlives its `wait` by this much (the last delta read): a slot whose
# release never reached Redis frees itself then.
WAIT_GRACE_SECONDS = 2.0


def _context(app: web.Application) -> feed.FeedContext:
    return app[state.SERVICES].feed


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding value admits gzip (RFC 9110 12.5.3): `gzip`,
    `x-gzip` or `*` with a q above 0, and no explicit `gzip;q=0`."""
    if not header:
        return False
    admitted: dict[str, bool] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        q = 1.0
        for param in params.split(";"):
            k, _, v = param.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v.strip())
                except ValueError:
                    q = 0.0
        admitted[name] = q > 0
    for name in ("gzip", "x-gzip"):
        if name in admitted:
            return admitted[name]
    return admitted.get("*", False)


async def _page_response(
    request: web.Request, page: feed.FeedPage, headers: dict[str, str]
) -> web.Response:
    wants = accepts_gzip(request.headers.get("Accept-Encoding"))
    body, gzipped = await feed.encoded(_context(request.app), page, wants)
    headers = {**headers, "Vary": "Accept-Encoding"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, content_type="application/json", headers=headers)


@routes.get("/v1/feed")
async def get_feed(request: web.Request) -> web.Response:
    app = request.app
    verified = await verify_node(request, await read_body(request), "pull")
    caller = verified.caller
    limit = query_int(request, "limit", 1000, 1, 5000)
    wait = query_int(request, "wait", 0, 0, 60)
    cursor = request.query.get("cursor") or None
    pull = Limit(per_minute(caller.identity.tenant.limits["pull_per_minute"]), str(caller.node_id))
    windows = await admit(request, verified, [("pull", pull, 1)])
    headers = quota_of("pull", windows).headers()
    if wait == 0:
        page = await feed.read(_context(app), caller, cursor, limit, 0)
        return await _page_response(request, page, headers)
    request[state.WAITS] = float(wait)
    slots = app[state.REDIS]
    key = f"waiters:{caller.node_id}"
    member = uuid.uuid4().hex
    if not await slots.waiter_enter(key, member, MAX_WAITING, wait + WAIT_GRACE_SECONDS):
        raise RateLimited(
            f"A node holds at most {MAX_WAITING} waiting feed requests.",
            headers={**headers, "Retry-After": "1"},
        )
    try:
        page = await feed.read(_context(app), caller, cursor, limit, float(wait))
    finally:
        await slots.waiter_leave(key, member)
    return await _page_response(request, page, headers)


@routes.get("/v1/decisions/{decision_id}/provenance")
async def get_provenance(request: web.Request) -> web.Response:
    caller = await authenticate_node(request, await read_body(request), "pull")
    decision_id = path_uuid(request, "decision_id", "decision")
    found = await feed.provenance(_context(request.app), caller, decision_id)
    if found is None:
        raise NotFound("No such decision.")
    return json_response(found)
