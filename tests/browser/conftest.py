"""Browser fixtures: Debian's Chromium driven by Playwright against a real hub.

The hub is the real app on a real loopback port (aiohttp's test server) over the run's
PostgreSQL and Redis; Playwright never downloads a browser: it launches
/usr/bin/chromium with the flags this machine needs (no sandbox as root, no
background networking).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, async_playwright

from honeymesh_hub.app import create_app
from honeymesh_hub.clock import ManualClock
from honeymesh_hub.config import Config
from tests.integration.conftest import make_admin_token
from tests.support import Hub

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "install Debian's chromium package (apt-get install chromium)"
    return found


@pytest.fixture
def hub_config(database_url: str, services: Any, redis_prefix: str) -> Config:
    return Config(
        database_url=database_url,
        redis_url=services.redis_url,
        redis_prefix=redis_prefix,
        identity_cache_seconds=0.0,
        identity_cache_listening_seconds=0.0,
    )


@pytest.fixture
async def live_hub(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    aiohttp_client: Callable[[TestServer], Awaitable[TestClient[Any, Any]]],
    hub_config: Config,
) -> AsyncIterator[tuple[Hub, str]]:
    """The hub on a real port, and its base URL for the browser."""
    clock = ManualClock()
    server = await aiohttp_server(create_app(hub_config, clock=clock))
    client = await aiohttp_client(server)
    token = await make_admin_token(hub_config.database_url, clock)
    hub = Hub(client, token, clock, database_url=hub_config.database_url)
    yield hub, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()
