"""Operational endpoints (PROTOCOL.md section 10)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .. import __version__, state
from ..clientaddress import client_address
from ..errors import NotFound, ServiceUnavailable
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
    try:
        async with asyncio.timeout(2):
            async with request.app[state.POOL].acquire() as conn:
                await conn.fetchval("SELECT 1")
    except Exception:  # any failure to answer means not ready
        raise ServiceUnavailable(
            "The hub cannot reach its database.",
            headers={"Retry-After": "5"},
            extra={"database": "unreachable", "redis": redis_state},
        ) from None
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
    async with request.app[state.POOL].acquire() as conn:
        depth = await conn.fetch("SELECT state, count(*) AS n FROM candidates GROUP BY state")
    for row in depth:
        metrics_.candidates.labels(row["state"]).set(row["n"])
    body = metrics_.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
