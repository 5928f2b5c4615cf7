"""POST /v1/signals (PROTOCOL.md section 6): gates in order, then the publish service."""

from __future__ import annotations

import time

from aiohttp import web

from .. import state
from ..admission import admit
from ..auth import verify_node
from ..bodies import parse_json, read_body
from ..errors import ValidationFailed
from ..ratelimit import Limit, per_minute, quota_of
from ..services.budgets import new_candidates_limit
from ..services.publishing import publish
from .common import json_response, now

routes = web.RouteTableDef()


def _envelopes(body: object, max_batch: int) -> list[object]:
    """The batch's shape; each envelope itself is checked alone by the service."""
    if not isinstance(body, dict) or set(body) != {"envelopes"}:
        detail = 'the body is {"envelopes": [...]} and nothing else'
        raise ValidationFailed(detail, errors=[{"pointer": "", "detail": detail}])
    envelopes = body["envelopes"]
    if not isinstance(envelopes, list) or not 1 <= len(envelopes) <= max_batch:
        detail = f"envelopes must be an array of 1 to {max_batch} envelopes"
        raise ValidationFailed(detail, errors=[{"pointer": "/envelopes", "detail": detail}])
    return envelopes


@routes.post("/v1/signals")
async def post_signals(request: web.Request) -> web.Response:
    started = time.perf_counter()
    app = request.app
    raw = await read_body(request)
    verified = await verify_node(request, raw, "publish")
    caller = verified.caller
    limits = caller.identity.tenant.limits
    envelopes = _envelopes(parse_json(request, raw), limits["max_batch"])
    cost = len(envelopes)
    node_limit = Limit(per_minute(limits["publish_per_minute"]), f"node:{caller.node_id}")
    tenant_limit = Limit(
        per_minute(limits["tenant_publish_per_minute"]), f"tenant:{caller.tenant_id}"
    )
    # One round trip: the nonce, both publish limits, and a look at the tenant's
    # new-candidate budget (charged once the batch shows what it really opens).
    node_window, tenant_window, budget = await admit(
        request,
        verified,
        [
            ("publish", node_limit, cost),
            ("publish", tenant_limit, cost),
            ("new_candidates", new_candidates_limit(caller), 0),
        ],
    )
    quota = quota_of("publish", [node_window, tenant_window])
    ctx = app[state.SERVICES].publishing.at(now(request))
    results = await publish(ctx, caller, envelopes, budget.remaining)
    app[state.METRICS].publish_latency.observe(time.perf_counter() - started)
    return json_response({"results": results}, status=202, headers=quota.headers())
