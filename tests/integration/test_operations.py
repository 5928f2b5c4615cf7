"""Operations (PROTOCOL.md sections 2, 9, 10): /readyz with Redis down or absent, nonces
in PostgreSQL meanwhile, and who may read /metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest

from honeymesh_hub.app import purge_nonces
from honeymesh_hub.clock import ManualClock, to_datetime
from honeymesh_hub.config import Config
from honeymesh_hub.store import nonces as nonce_store
from tests.conftest import Services
from tests.integration.foundation import (
    AiohttpClient,
    assert_problem,
    enroll_reply,
    fetchval,
    send,
    shared_database,
    start_hub,
)
from tests.support import Hub


@pytest.fixture(scope="module")
def database_url(services: Services, template_db: str) -> Iterator[str]:
    yield from shared_database(services, template_db)


def _closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("redis", ["unreachable", "absent"])
async def test_without_redis_the_hub_serves_and_refuses_replays(
    aiohttp_client: AiohttpClient,
    hub_config: Config,
    clock: ManualClock,
    redis: str,
) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0" if redis == "unreachable" else None
    hub = await start_hub(aiohttp_client, dataclasses.replace(hub_config, redis_url=url), clock)

    ready = await send(hub, "GET", "/readyz")
    assert ready.status == 200
    assert ready.body == {"database": "ok", "redis": "degraded" if url else "absent"}

    # Enrollment still counts per process and says so in its fields.
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id)
    node, reply = await enroll_reply(hub, token)
    assert reply.status == 201, reply.body
    assert reply.headers["RateLimit-Policy"] == '"enroll";q=10;w=60'

    nonce = "nonce-kept-in-postgres-01"
    assert (await node.request("GET", "/v1/nodes/self", nonce=nonce)).status == 200
    assert_problem(
        await node.request("GET", "/v1/nodes/self", nonce=nonce), 401, "replayed_request"
    )
    kept = await fetchval(
        hub.database_url,
        "SELECT count(*) FROM request_nonces WHERE keyid = $1 AND nonce = $2",
        node.key.keyid,
        nonce,
    )
    assert kept == 1
    if url:
        metrics = (await send(hub, "GET", "/metrics")).raw.decode()
        assert "honeymesh_redis_degraded 1.0" in metrics


async def test_with_redis_nonces_are_kept_in_postgres_too(hub: Hub) -> None:
    """PostgreSQL is the one record of nonces (PROTOCOL.md 2 r2), Redis or not."""
    assert (await send(hub, "GET", "/readyz")).body == {"database": "ok", "redis": "ok"}
    node = await hub.enroll()
    nonce = "nonce-kept-in-postgres-01"
    assert (await node.request("GET", "/v1/nodes/self", nonce=nonce)).status == 200
    assert_problem(
        await node.request("GET", "/v1/nodes/self", nonce=nonce), 401, "replayed_request"
    )
    kept = await fetchval(
        hub.database_url,
        "SELECT count(*) FROM request_nonces WHERE keyid = $1 AND nonce = $2",
        node.key.keyid,
        nonce,
    )
    assert kept == 1


async def test_healthz_and_hub(hub: Hub) -> None:
    assert (await send(hub, "GET", "/healthz")).status == 200
    info = await send(hub, "GET", "/v1/hub")
    assert info.status == 200
    assert info.body["api"] == "v1" and info.body["name"] and info.body["version"]


async def test_metrics_answer_loopback(hub: Hub) -> None:
    await send(hub, "GET", "/v1/hub")
    reply = await send(hub, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    text = reply.raw.decode()
    assert "# TYPE honeymesh_http_requests" in text
    assert 'route="/v1/hub"' in text


@pytest.mark.parametrize(
    ("allow", "forwarded", "status"),
    [
        ((), "203.0.113.5", 404),
        ((), "127.0.0.1", 200),
        (("203.0.113.0/24",), "203.0.113.5", 200),
        (("203.0.113.0/24",), "198.51.100.5", 404),
        (("2001:db8::/32",), "2001:db8::1", 200),
    ],
)
async def test_metrics_answer_only_loopback_and_the_allowed_ranges(
    aiohttp_client: AiohttpClient,
    hub_config: Config,
    clock: ManualClock,
    allow: tuple[str, ...],
    forwarded: str,
    status: int,
) -> None:
    """Behind a trusted proxy, the client's own address decides (metrics_allow)."""
    config = dataclasses.replace(
        hub_config,
        trusted_proxies=(ipaddress.ip_network("127.0.0.1"),),
        metrics_allow=tuple(ipaddress.ip_network(a) for a in allow),
    )
    hub = await start_hub(aiohttp_client, config, clock)
    reply = await send(hub, "GET", "/metrics", headers={"X-Forwarded-For": forwarded})
    if status == 404:
        assert_problem(reply, 404, "not_found")
        assert b"honeymesh_" not in reply.raw
    else:
        assert reply.status == 200
        assert b"honeymesh_http_requests" in reply.raw


async def test_the_periodic_purge_removes_expired_nonces_and_keeps_fresh_ones(hub: Hub) -> None:
    keyid = f"purge-test-{uuid.uuid4().hex}"
    now = to_datetime(hub.now())
    conn = await asyncpg.connect(hub.database_url)
    try:
        for i in range(5):  # spent 600 s ago: expired now
            await nonce_store.remember(conn, keyid, f"old-{i}", now - timedelta(seconds=600), 600)
        for i in range(3):  # spent now: fresh for 600 s
            await nonce_store.remember(conn, keyid, f"new-{i}", now, 600)
        assert await nonce_store.purge_expired(conn, now, batch=2) == 5  # in batches of 2
        for i in range(4):
            await nonce_store.remember(conn, keyid, f"old-{i}", now - timedelta(seconds=601), 600)
    finally:
        await conn.close()
    assert await purge_nonces(hub.client.app) >= 4  # the round the app runs each minute
    kept = await fetchval(
        hub.database_url,
        "SELECT array_agg(nonce ORDER BY nonce) FROM request_nonces WHERE keyid = $1",
        keyid,
    )
    assert kept == ["new-0", "new-1", "new-2"]


async def test_the_app_runs_a_nonce_purge(hub: Hub) -> None:
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "nonce-purge"]
    assert len(tasks) == 1
    assert not tasks[0].done()
