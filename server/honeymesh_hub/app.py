"""The app factory: middlewares, routes, and each resource opened and closed in pairs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from . import routes, state
from .auth import KeyDirectory
from .bodies import MAX_BODY
from .clock import Clock, system_clock, to_datetime
from .config import Config
from .metrics import Metrics
from .middleware import hub_middleware
from .ratelimit import RateLimiter
from .redisconn import RedisGate
from .store import allowlist as allowlist_store
from .store.db import create_pool


def create_app(config: Config, *, clock: Clock | None = None) -> web.Application:
    app = web.Application(middlewares=[hub_middleware], client_max_size=MAX_BODY)
    app[state.CONFIG] = config
    app[state.CLOCK] = clock or system_clock
    app[state.METRICS] = Metrics()
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_database)
    routes.setup(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[state.CONFIG]
    pool = await create_pool(config.database_url)
    app[state.POOL] = pool
    app[state.DIRECTORY] = KeyDirectory(pool, config.identity_cache_seconds)
    await _seed_public_addresses(app, pool)
    yield
    await pool.close()


async def _seed_public_addresses(app: web.Application, pool: Any) -> None:
    """The hub's own addresses are never blocked (PROTOCOL.md sections 4 and 11)."""
    now = to_datetime(app[state.CLOCK]())
    async with pool.acquire() as conn:
        for net in app[state.CONFIG].public_addresses:
            await allowlist_store.insert(
                conn, entry_id=uuid.uuid4(), cidr=net, reason="hub public address", now=now
            )


async def _redis(app: web.Application) -> AsyncIterator[None]:
    config = app[state.CONFIG]
    gate = RedisGate(config.redis_url, config.redis_prefix, app[state.METRICS])
    app[state.REDIS] = gate
    app[state.LIMITER] = RateLimiter(config.redis_url, gate)
    yield
    await gate.close()
