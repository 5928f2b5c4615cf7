"""App-level fixtures: the real hub app on a fresh database and Redis key space."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import devservices  # scripts/, on sys.path through tests/conftest.py
from honeymesh_hub.app import create_app
from honeymesh_hub.clock import ManualClock, to_datetime
from honeymesh_hub.config import Config
from honeymesh_hub.services.admin import create_api_token
from honeymesh_hub.store.db import connect
from tests.support import Hub


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def hub_config(database_url: str, services: Any, redis_prefix: str) -> Config:
    return Config(
        database_url=database_url,
        redis_url=services.redis_url,
        redis_prefix=redis_prefix,
        identity_cache_seconds=0.0,
        identity_cache_listening_seconds=0.0,
    )


async def make_admin_token(database_url: str, clock: ManualClock) -> str:
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            made = await create_api_token(
                conn,
                to_datetime(clock()),
                "test",
                role="admin",
                scope=None,
                name="root",
                expires_at=None,
            )
    finally:
        await conn.close()
    return made["token"]


@pytest.fixture
async def hub(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    hub_config: Config,
    clock: ManualClock,
) -> AsyncIterator[Hub]:
    client = await aiohttp_client(create_app(hub_config, clock=clock))
    yield Hub(
        client,
        await make_admin_token(hub_config.database_url, clock),
        clock,
        database_url=hub_config.database_url,
    )


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A Redis of the test's own, to stop and start (outages)."""
    server = devservices.RedisServer(tmp_path / "redis", port=devservices.free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
