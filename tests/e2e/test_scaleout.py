"""Replicas act as one hub: three hub processes on one PostgreSQL and Redis behind a
real HAProxy on loopback (tests/e2e/proxy.py, configured as deploy/haproxy.cfg is).

Limits and nonces hold across replicas, a client cannot spoof its address through
the proxy, revocation and suspension reach every replica within 5 s, long-polls
wake across replicas, a SIGKILLed replica loses no acknowledged signal while the
others keep serving, Redis stopped leaves the hubs serving (degraded), and a
PostgreSQL restart is answered 503 with Retry-After, recovered from by itself, with
the node's spool catching up.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

import devservices  # scripts/, on sys.path through tests/conftest.py
from devproxy import Proxy  # scripts/, on sys.path through tests/conftest.py
from honeymesh_client.protocol.dsse import build_envelope

from .conftest import HubFactory
from .remote import Admin, HubProcess, Node, Reply, create_admin_token, hub_env, send
from .test_cli_walk import NODE_BIN, cli, client_env, enrolled_node, publish_args, status_of
from .test_client_resilience import count_signals, until

PROXIED = {"HONEYMESH_TRUSTED_PROXIES": "127.0.0.1/32"}


@dataclass
class Cluster:
    hubs: list[HubProcess]
    proxy: Proxy

    @property
    def base(self) -> str:
        return self.proxy.base_url


def start_cluster(factory: HubFactory, env: dict[str, str], tmp: Path) -> Cluster:
    hubs = [factory(env=env) for _ in range(3)]
    return Cluster(hubs, Proxy(tmp, devservices.free_port(), [h.port for h in hubs]))


@pytest.fixture
def cluster(
    hub_process_factory: HubFactory, hub_env_vars: dict[str, str], tmp_path: Path
) -> Iterator[Cluster]:
    made = start_cluster(hub_process_factory, {**hub_env_vars, **PROXIED}, tmp_path)
    yield made
    made.proxy.stop()


def envelope(node: Node, value: str, confidence: int = 80, share: str = "mesh") -> Any:
    payload = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "node_id": node.node_id,
        "observed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "indicator": {"type": "ip", "value": value},
        "scenario": "ssh/brute-force",
        "action": "blocked",
        "mode": "enforce",
        "confidence": confidence,
        "ttl_seconds": 3600,
        "share": share,
    }
    return payload["id"], build_envelope(node.key, json.dumps(payload).encode())


async def publish(node: Node, base: str, value: str, **kw: Any) -> tuple[str, Reply]:
    signal_id, env = envelope(node, value, **kw)
    return signal_id, await node.request(base, "POST", "/v1/signals", {"envelopes": [env]})


async def test_limits_and_nonces_hold_across_replicas(cluster: Cluster, admin: Admin) -> None:
    node = await admin.enroll_node(cluster.base)
    reply = await admin.call(
        cluster.base,
        "PATCH",
        f"/v1/admin/tenants/{node.tenant_id}",
        {"limits": {"publish_per_minute": 20}},
    )
    assert reply.status == 200

    async def every_replica_sees_20() -> bool:
        for hub in cluster.hubs:
            me = await node.request(hub.base_url, "GET", "/v1/nodes/self")
            if me.body["limits"]["publish_per_minute"] != 20:
                return False
        return True

    await until(every_replica_sees_20, within=5)
    statuses = [(await publish(node, cluster.base, f"198.51.100.{i}"))[1].status for i in range(30)]
    assert statuses.count(202) == 20 and statuses.count(429) == 10
    signed = node.sign("GET", "/v1/nodes/self")
    first = await node.send(cluster.base, signed)
    assert first.status == 200
    for hub in cluster.hubs:  # the same request, replayed to every replica
        again = await node.send(hub.base_url, signed)
        assert (again.status, again.code) == (401, "replayed_request")


async def test_a_client_cannot_spoof_its_address_through_the_proxy(
    cluster: Cluster, session: aiohttp.ClientSession
) -> None:
    codes = []
    for i in range(11):
        reply = await send(
            session,
            "POST",
            cluster.base + "/v1/nodes/enroll",
            {"Content-Type": "application/json", "X-Forwarded-For": f"203.0.113.{i}"},
            b"{}",
        )
        codes.append(reply.status)
    # The proxy replaces X-Forwarded-For: all eleven count for the one real client.
    assert 429 not in codes[:10] and codes[10] == 429


async def test_revocation_and_suspension_reach_every_replica_within_5s(
    cluster: Cluster, admin: Admin
) -> None:
    revoked, suspended = (
        await admin.enroll_node(cluster.base),
        await admin.enroll_node(cluster.base),
    )
    for hub in cluster.hubs:  # every replica has both identities cached
        for node in (revoked, suspended):
            assert (await node.request(hub.base_url, "GET", "/v1/nodes/self")).status == 200
    started = time.monotonic()
    assert (
        await admin.call(cluster.base, "POST", f"/v1/admin/nodes/{revoked.node_id}/revoke")
    ).status == 200
    assert (
        await admin.call(
            cluster.base,
            "PATCH",
            f"/v1/admin/tenants/{suspended.tenant_id}",
            {"status": "suspended"},
        )
    ).status == 200

    async def refused_everywhere() -> bool:
        for hub in cluster.hubs:
            a = await revoked.request(hub.base_url, "GET", "/v1/nodes/self")
            b = await suspended.request(hub.base_url, "GET", "/v1/nodes/self")
            if (a.code, b.code) != ("node_revoked", "tenant_suspended"):
                return False
        return True

    await until(refused_everywhere, within=5)
    assert time.monotonic() - started < 5


async def test_long_poll_wakes_across_replicas(cluster: Cluster, admin: Admin) -> None:
    publisher = await admin.enroll_node(cluster.base)
    await admin.call(
        cluster.base, "PATCH", f"/v1/admin/nodes/{publisher.node_id}", {"trusted": True}
    )
    reader = await admin.enroll_node(cluster.base)
    head = await reader.request(cluster.base, "GET", "/v1/feed")
    cursor = head.body["cursor"]
    waits = [
        asyncio.create_task(
            reader.request(hub.base_url, "GET", f"/v1/feed?wait=30&cursor={cursor}")
        )
        for hub in cluster.hubs[:2]
    ]
    # Through the proxy, which sends it to a replica of its choice.
    _, reply = await publish(publisher, cluster.base, "198.51.100.50", confidence=95)
    assert reply.body["results"][0]["candidate_state"] == "approved"
    committed = time.monotonic()
    pages = await asyncio.wait_for(asyncio.gather(*waits), 10)
    assert all(len(p.body["added"]) == 1 for p in pages)
    assert time.monotonic() - committed < 1.5


async def test_sigkill_of_a_replica_loses_nothing_and_the_others_serve(
    cluster: Cluster, admin: Admin, hub_env_vars: dict[str, str]
) -> None:
    nodes = [await admin.enroll_node(cluster.base) for _ in range(4)]
    acked: list[str] = []
    killed = asyncio.Event()
    after_kill = 0

    async def load(node: Node, n: int) -> None:
        nonlocal after_kill
        for i in range(60):
            signal_id, env = envelope(node, f"198.51.{n}.{i}")
            while True:  # a client re-sends what got no answer; the hub dedups
                try:
                    reply = await node.request(
                        cluster.base, "POST", "/v1/signals", {"envelopes": [env]}
                    )
                except aiohttp.ClientError:
                    continue
                if reply.status in (502, 503):
                    continue
                break
            assert reply.status == 202, reply.body
            if reply.body["results"][0]["status"] in ("accepted", "duplicate"):
                acked.append(signal_id)
                if killed.is_set():
                    after_kill += 1
            if len(acked) == 80 and not killed.is_set():
                cluster.hubs[1].signal(signal.SIGKILL)
                killed.set()

    await asyncio.gather(*(load(node, n) for n, node in enumerate(nodes)))
    assert killed.is_set() and after_kill >= 100
    stored = await count_signals(hub_env_vars["HONEYMESH_DATABASE_URL"], acked)
    assert set(stored) == set(acked) and set(stored.values()) == {1}


async def test_redis_stopped_hubs_keep_serving_and_say_degraded(
    hub_process_factory: HubFactory,
    database_url: str,
    redis_prefix: str,
    tmp_path: Path,
    session: aiohttp.ClientSession,
) -> None:
    redis = devservices.RedisServer(tmp_path / "redis", port=devservices.free_port())
    redis.start()
    try:
        env = hub_env(database_url, redis.url, redis_prefix, **PROXIED)
        cluster = start_cluster(hub_process_factory, env, tmp_path)
        try:
            admin = Admin(session, create_admin_token(env))
            node = await admin.enroll_node(cluster.base)
            redis.stop()

            async def degraded_everywhere() -> bool:
                for hub in cluster.hubs:
                    ready = await send(session, "GET", hub.base_url + "/readyz")
                    if ready.status != 200 or ready.body.get("redis") != "degraded":
                        return False
                return True

            await until(degraded_everywhere, within=10)
            _, reply = await publish(node, cluster.base, "198.51.100.60")
            assert reply.status == 202 and reply.body["results"][0]["status"] == "accepted"
            signed = node.sign("GET", "/v1/nodes/self")
            assert (await node.send(cluster.hubs[0].base_url, signed)).status == 200
            replay = await node.send(cluster.hubs[2].base_url, signed)
            assert replay.code == "replayed_request"  # nonces in PostgreSQL meanwhile
        finally:
            cluster.proxy.stop()
    finally:
        redis.stop()


@pytest.fixture
async def own_postgres() -> AsyncIterator[devservices.PostgresServer]:
    """A PostgreSQL of this test alone, kept across a stop and start (a persistent
    cluster in a directory the `postgres` user can reach), removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix="hm-pg-restart-"))
    os.chmod(top, 0o755)  # noqa: S103 - the postgres user must traverse it
    pg = devservices.PostgresServer(top / "pg", port=devservices.free_port())
    await asyncio.to_thread(pg.start)
    try:
        yield pg
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(top, ignore_errors=True)


async def test_postgres_restart_answers_503_then_recovers_and_the_spool_catches_up(
    hub_process_factory: HubFactory,
    own_postgres: devservices.PostgresServer,
    services: Any,
    redis_prefix: str,
    tmp_path: Path,
    session: aiohttp.ClientSession,
) -> None:
    dsn = await asyncio.to_thread(own_postgres.ensure_database, "hub")
    env = hub_env(dsn, services.redis_url, redis_prefix, **PROXIED)
    cluster = start_cluster(hub_process_factory, env, tmp_path)
    try:
        admin = Admin(session, create_admin_token(env))
        tenant = await admin.call(
            cluster.base, "POST", "/v1/admin/tenants", {"name": "t", "plan": "pro"}
        )
        token = await admin.call(
            cluster.base,
            "POST",
            f"/v1/admin/tenants/{tenant.body['tenant_id']}/enrollment-tokens",
            {"ttl_seconds": 3600, "max_uses": 1},
        )
        home = tmp_path / "node"
        await enrolled_node(home, cluster.base, token.body["token"], "n")
        node_env = client_env(home)

        await asyncio.to_thread(own_postgres.stop)
        ready = await send(session, "GET", cluster.hubs[0].base_url + "/readyz")
        assert ready.status == 503 and ready.body["code"] == "service_unavailable"
        assert "Retry-After" in ready.headers
        spooled = []
        for i in range(3):
            done = await cli(NODE_BIN, publish_args(f"198.51.100.{70 + i}"), node_env)
            assert done.code == 0 and status_of(done) == ["spooled"], done.out + done.err
            spooled.append(done.out.split()[0])

        await asyncio.to_thread(own_postgres.start)

        async def all_ready() -> bool:
            for hub in cluster.hubs:
                if (await send(session, "GET", hub.base_url + "/readyz")).status != 200:
                    return False
            return True

        await until(all_ready, within=30)

        async def delivered() -> bool:
            return (await cli(NODE_BIN, ["flush"], node_env)).code == 0

        await until(delivered, within=30, interval=0.3)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT signal_uuid::text AS id FROM signals WHERE signal_uuid = any($1::uuid[])",
                spooled,
            )
        finally:
            await conn.close()
        assert sorted(r["id"] for r in rows) == sorted(spooled)
    finally:
        cluster.proxy.stop()
