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


def _page_response(page: feed.FeedPage, headers: dict[str, str]) -> web.Response:
    return web.Response(body=page.body(), content_type="application/json", headers=headers)


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
        return _page_response(page, headers)
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
    return _page_response(page, headers)


@routes.get("/v1/decisions/{decision_id}/provenance")
async def get_provenance(request: web.Request) -> web.Response:
    caller = await authenticate_node(request, await read_body(request), "pull")
    decision_id = path_uuid(request, "decision_id", "decision")
    found = await feed.provenance(_context(request.app), caller, decision_id)
    if found is None:
        raise NotFound("No such decision.")
    return json_response(found)
