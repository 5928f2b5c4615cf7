"""End-to-end fixtures: real `honeymesh-hub serve` processes on the run's servers.

`hub_process_factory` starts hubs on free ports against this test's database and
Redis prefix (or others given), waits until `/readyz` answers, and stops every one
of them (workers included) at teardown, whatever the test did.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

import devservices  # scripts/, on sys.path through tests/conftest.py

from .remote import Admin, HubProcess, create_admin_token, hub_env, start_hub

HubFactory = Callable[..., HubProcess]


@pytest.fixture
def hub_env_vars(services: Any, database_url: str, redis_prefix: str) -> dict[str, str]:
    """The environment a hub of this test runs with."""
    return hub_env(database_url, services.redis_url, redis_prefix)


@pytest.fixture
def hub_process_factory(hub_env_vars: dict[str, str], tmp_path: Path) -> Iterator[HubFactory]:
    """`start(workers=1, env=None, ready=True)` -> a running HubProcess on a free port."""
    started: list[HubProcess] = []

    def start(
        workers: int = 1, env: dict[str, str] | None = None, *, ready: bool = True
    ) -> HubProcess:
        n = len(started)
        hub = start_hub(
            env or hub_env_vars,
            devservices.free_port(),
            tmp_path / f"hub{n}.log",
            tmp_path / f"hub{n}-tmp",
            workers=workers,
        )
        started.append(hub)
        if ready:
            hub.wait_ready()
        return hub

    try:
        yield start
    finally:
        for hub in started:
            hub.kill_all()


@pytest.fixture
def admin_token(hub_env_vars: dict[str, str]) -> str:
    """An admin token made by the hub's CLI on this test's database."""
    return create_admin_token(hub_env_vars)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # force_close: every request opens its own connection, so SO_REUSEPORT spreads them.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as client:
        yield client


@pytest.fixture
def admin(session: aiohttp.ClientSession, admin_token: str) -> Admin:
    return Admin(session, admin_token)


@pytest.fixture
async def empty_database(services: Any) -> AsyncIterator[str]:
    """A new database with no schema at all; dropped afterwards."""
    import asyncpg

    name = f"hm_e2e_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(services.pg_admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield urlunsplit(urlsplit(services.pg_admin_dsn)._replace(path=f"/{name}"))
    finally:
        conn = await asyncpg.connect(services.pg_admin_dsn)
        with contextlib.suppress(Exception):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
