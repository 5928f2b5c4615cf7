"""Run-wide PostgreSQL and Redis for the suite (ARCHITECTURE.md section 3, Tests).

One throwaway PostgreSQL and one Redis start per run on free ports in a temp
dir (scripts/devservices.py), unless HONEYMESH_TEST_DATABASE_URL /
HONEYMESH_TEST_REDIS_URL name servers to use instead.  The schema is migrated
once into a template database; each test that asks for `database_url` gets a
fresh `CREATE DATABASE ... TEMPLATE` copy, and `redis_prefix` gives each test
its own key space.  Servers start only when a test asks for them, so pure
unit tests run without any.

The fixtures are sync and drive asyncpg on a private event loop that never
becomes the thread's current loop, so they do not disturb pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import devservices

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Services:
    """Where the run's servers are. `pg_admin_dsn` may create and drop databases."""

    pg_admin_dsn: str
    redis_url: str


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a private loop (a thread if one is running here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def dsn_with_database(dsn: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _admin_execute(admin_dsn: str, *statements: str | tuple[str, str]) -> None:
    """Run each statement; a (sql, value) pair binds `value` to $1."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        for statement in statements:
            if isinstance(statement, tuple):
                await conn.execute(*statement)
            else:
                await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """PostgreSQL and Redis for the whole run: throwaway, or the HONEYMESH_TEST_* URLs."""
    pg_url = os.environ.get("HONEYMESH_TEST_DATABASE_URL", "").strip()
    redis_url = os.environ.get("HONEYMESH_TEST_REDIS_URL", "").strip()
    pg: devservices.PostgresServer | None = None
    redis: devservices.RedisServer | None = None
    try:
        if not pg_url:
            pg = devservices.PostgresServer()
            pg.start()
            pg_url = pg.dsn("postgres")
        if not redis_url:
            redis = devservices.RedisServer()
            redis.start()
            redis_url = redis.url
    except devservices.DevServiceError as exc:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        pytest.exit(str(exc), returncode=3)
    try:
        yield Services(pg_admin_dsn=pg_url, redis_url=redis_url)
    finally:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()


@pytest.fixture(scope="session")
def template_db(services: Services) -> Iterator[str]:
    """A database migrated once with `honeymesh_hub.store.db.migrate`; its name."""
    from honeymesh_hub.store.db import migrate

    name = f"hm_template_{uuid.uuid4().hex[:8]}"
    quoted = _quote_ident(name)
    run_async(_admin_execute(services.pg_admin_dsn, f"CREATE DATABASE {quoted}"))
    try:
        run_async(migrate(dsn_with_database(services.pg_admin_dsn, name)))
        # A template must have no sessions when copied; refuse new ones for good.
        run_async(
            _admin_execute(
                services.pg_admin_dsn,
                f"ALTER DATABASE {quoted} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                (
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                ),
            )
        )
        yield name
    finally:
        run_async(
            _admin_execute(
                services.pg_admin_dsn,
                f"ALTER DATABASE {quoted} WITH IS_TEMPLATE false",
                f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)",
            )
        )


async def _copy_of(admin_dsn: str, name: str, template: str) -> None:
    """CREATE DATABASE `name` as a copy of `template`. From PostgreSQL 15 on, by copying
    its files (FILE_COPY): a throwaway cluster has fsync off, so the checkpoint that
    costs is cheap, and it beats 15's default WAL_LOG by about half for a database this
    small (both to create and to drop)."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        version = int(await conn.fetchval("SHOW server_version_num"))
        strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""
        await conn.execute(
            f"CREATE DATABASE {_quote_ident(name)} TEMPLATE {_quote_ident(template)}{strategy}"
        )
    finally:
        await conn.close()


def copied_database(services: Services, template_db: str, prefix: str) -> Iterator[str]:
    """A fresh copy of the migrated template, named `<prefix><12 hex>`; its DSN, and
    the database dropped afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    run_async(_copy_of(services.pg_admin_dsn, name, template_db))
    try:
        yield dsn_with_database(services.pg_admin_dsn, name)
    finally:
        run_async(_drop(services.pg_admin_dsn, name))


async def _drop(admin_dsn: str, name: str) -> None:
    """DROP DATABASE `name`, its sessions ended first.

    The test's own connections may still be open here (their sockets close with the
    test's event loop). DROP ... FORCE would end them too, but it then sleeps 100 ms
    before it looks whether they have gone (CountOtherDBBackends), and that was most
    of a short test's time. Ended here, they are gone within milliseconds: a look at
    pg_stat_activity costs about one, and there is no event to wait for. Whatever is
    left after a second, FORCE ends as before."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        for _ in range(500):
            busy = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            if not busy:
                break
            await asyncio.sleep(0.002)
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
def database_url(services: Services, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test; dropped afterwards."""
    yield from copied_database(services, template_db, "hm_test_")


@pytest.fixture
def redis_prefix(services: Services) -> Iterator[str]:
    """A key prefix of this test's own (`hmt:<8 hex>:`); its keys are deleted afterwards."""
    import redis

    prefix = f"hmt:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(services.redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


from tests.gotools import run, tlogverify  # noqa: E402, F401  (Go's verifier)
