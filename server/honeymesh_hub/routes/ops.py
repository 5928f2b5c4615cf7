"""Operational endpoints (PROTOCOL.md section 10)."""

from __future__ import annotations

from aiohttp import web

from .. import __version__, state
from ..clientaddress import client_address
from ..errors import NotFound, ServiceUnavailable
from ..services import ops
from .common import json_response

routes = web.RouteTableDef()


@routes.get("/v1/hub")
async def hub_info(request: web.Request) -> web.Response:
    return json_response({"name": "HoneyMesh Hub", "version": __version__, "api": "v1"})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    redis_state = await request.app[state.REDIS].ping()
    if not await ops.database_ready(request.app[state.POOL]):
        raise ServiceUnavailable(
            "The hub cannot reach its database.",
            headers={"Retry-After": "5"},
            extra={"database": "unreachable", "redis": redis_state},
        )
    return json_response({"database": "ok", "redis": redis_state})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, for loopback and HONEYMESH_METRICS_ALLOW only; 404 to others."""
    addr = client_address(request, request.app[state.CONFIG])
    allowed = request.app[state.CONFIG].metrics_allow
    if addr is None or not (
        addr.is_loopback or any(addr.version == n.version and addr in n for n in allowed)
    ):
        raise NotFound("No such resource.")
    metrics_ = request.app[state.METRICS]
    for name, count in (await ops.queue_depth(request.app[state.POOL])).items():
        metrics_.candidates.labels(name).set(count)
    body = metrics_.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
