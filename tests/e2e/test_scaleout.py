"""Replicas act as one hub: three hub processes on one PostgreSQL and Redis behind a
real HAProxy on loopback (scripts/devproxy.py), the hubs trusting only the proxy's
address (HONEYMESH_TRUSTED_PROXIES=127.0.0.1/32).

Limits and nonces hold across replicas; the hubs count the real client behind the
proxy, which a client cannot spoof; revocation and suspension reach every replica
within 5 s; long-polls wake across replicas; a SIGKILLed replica loses no
acknowledged signal while the others keep serving; Redis stopped leaves the hubs
serving (degraded); a PostgreSQL restart under load is answered 503 with
Retry-After and recovered from by itself, with a node's spool catching up. Last,
deploy/haproxy.cfg itself terminates TLS in front of the hubs.

Clients pick their own loopback source address (127.0.0.2, 127.0.0.3, ...), so the
proxy (127.0.0.1) and each client are different peers, as on a real network.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import devservices  # scripts/, on sys.path through tests/conftest.py
from devproxy import Proxy  # scripts/, on sys.path through tests/conftest.py
from honeymesh_client.protocol.dsse import build_envelope

from .conftest import HubFactory
from .remote import Admin, HubProcess, Node, Reply, create_admin_token, hub_env, send
from .test_cli_walk import NODE_BIN, cli, client_env, enrolled_node, publish_args, status_of
from .test_client_resilience import count_signals, until

PROXIED = {"HONEYMESH_TRUSTED_PROXIES": "127.0.0.1/32"}
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENROLL_PER_MINUTE = 10  # PROTOCOL.md 9: enrollment per source address
LOAD_DEADLINE = 60.0  # no load loop in this file runs longer than this


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


@pytest.fixture
async def peers() -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    """Client sessions from their own loopback addresses: peers["127.0.0.2"], ..."""
    opened: dict[str, aiohttp.ClientSession] = {}
    for last in range(2, 8):
        addr = f"127.0.0.{last}"
        opened[addr] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, ssl=False, local_addr=(addr, 0)),
            timeout=aiohttp.ClientTimeout(total=30),
        )
    try:
        yield opened
    finally:
        for client in opened.values():
            await client.close()


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


async def enroll_attempts(
    client: aiohttp.ClientSession, base: str, n: int, spoof: str | None = None
) -> list[int]:
    """Statuses of `n` (invalid) enrollment requests, each claiming another address in
    X-Forwarded-For when `spoof` is given (a format with {i})."""
    codes = []
    for i in range(n):
        headers = {"Content-Type": "application/json"}
        if spoof is not None:
            headers["X-Forwarded-For"] = spoof.format(i=i)
        reply = await send(client, "POST", base + "/v1/nodes/enroll", headers, b"{}")
        codes.append(reply.status)
    return codes


def refused_at_the_limit(codes: list[int]) -> bool:
    """The first ENROLL_PER_MINUTE allowed (any answer but 429), every later one 429."""
    head, tail = codes[:ENROLL_PER_MINUTE], codes[ENROLL_PER_MINUTE:]
    return 429 not in head and bool(tail) and set(tail) == {429}


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
    # Each replica in turn: per-process limits would accept all 30 (20 each).
    statuses = [
        (await publish(node, cluster.hubs[i % 3].base_url, f"198.51.100.{i}"))[1].status
        for i in range(30)
    ]
    assert statuses.count(202) == 20 and statuses.count(429) == 10
    _, through_proxy = await publish(node, cluster.base, "198.51.100.200")
    assert through_proxy.status == 429 and int(through_proxy.headers["Retry-After"]) >= 1

    signed = node.sign("GET", "/v1/nodes/self")
    first = await node.send(cluster.base, signed)
    assert first.status == 200
    for hub in cluster.hubs:  # the same request, replayed to every replica
        again = await node.send(hub.base_url, signed)
        assert (again.status, again.code) == (401, "replayed_request")


async def test_the_hubs_count_the_real_client_behind_the_proxy_which_cannot_be_spoofed(
    cluster: Cluster, peers: dict[str, aiohttp.ClientSession]
) -> None:
    # 127.0.0.2 claims another address in X-Forwarded-For every time; the proxy
    # appends the real one and the hubs take the right-most entry: all eleven count
    # for 127.0.0.2, on whichever replica each landed.
    spoofer = await enroll_attempts(peers["127.0.0.2"], cluster.base, 11, spoof="203.0.113.{i}")
    assert refused_at_the_limit(spoofer), spoofer
    # Another client behind the same proxy has its own budget: the hubs do not count
    # the proxy's address.
    assert 429 not in await enroll_attempts(peers["127.0.0.3"], cluster.base, 3)
    # Straight to a replica, a client is not a trusted proxy: its X-Forwarded-For counts
    # for nothing, neither to escape its own limit nor to spend another client's.
    hub = cluster.hubs[0].base_url
    assert await enroll_attempts(peers["127.0.0.2"], hub, 1, spoof="127.0.0.9") == [429]
    framed = await enroll_attempts(peers["127.0.0.4"], hub, 3, spoof="127.0.0.3")
    assert 429 not in framed
    assert 429 not in await enroll_attempts(peers["127.0.0.3"], cluster.base, 1)


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

    # PROTOCOL.md 4 / docs/operations.md: a change reaches every replica within 5 s.
    await until(refused_everywhere, within=5)


async def test_long_poll_wakes_across_replicas(cluster: Cluster, admin: Admin) -> None:
    publisher = await admin.enroll_node(cluster.base)
    await admin.call(
        cluster.base, "PATCH", f"/v1/admin/nodes/{publisher.node_id}", {"trusted": True}
    )
    reader, other = await admin.enroll_node(cluster.base), await admin.enroll_node(cluster.base)
    cursors = [
        (await node.request(cluster.base, "GET", "/v1/feed")).body["cursor"]
        for node in (reader, other)
    ]
    wait, other_wait = (f"/v1/feed?wait=30&cursor={cursor}" for cursor in cursors)
    waits = [
        asyncio.create_task(reader.request(cluster.hubs[0].base_url, "GET", wait)),
        asyncio.create_task(reader.request(cluster.hubs[1].base_url, "GET", wait)),
    ]

    async def waiting(n: int) -> bool:
        return not any(w.done() for w in waits) and await feed_waiters(cluster) >= n

    await until(lambda: waiting(2), within=10)
    # A node's cap on waiting requests counts across replicas too.
    third = await reader.request(cluster.hubs[2].base_url, "GET", wait)
    assert (third.status, third.code) == (429, "rate_limited"), third.body
    waits.append(asyncio.create_task(other.request(cluster.base, "GET", other_wait)))
    await until(lambda: waiting(3), within=10)
    # Committed on the third replica: the first two learn of it through PostgreSQL.
    _, reply = await publish(publisher, cluster.hubs[2].base_url, "198.51.100.50", confidence=95)
    assert reply.body["results"][0]["candidate_state"] == "approved"
    # Well before their 30 s wait would run out.
    pages = await asyncio.wait_for(asyncio.gather(*waits), 10)
    assert [[a["indicator"]["value"] for a in p.body["added"]] for p in pages] == [
        ["198.51.100.50"]
    ] * 3


async def feed_waiters(cluster: Cluster) -> float:
    """honeymesh_feed_waiters summed over the replicas (their /metrics)."""
    total = 0.0
    async with aiohttp.ClientSession() as client:
        for hub in cluster.hubs:
            reply = await send(client, "GET", hub.base_url + "/metrics")
            for line in reply.raw.decode().splitlines():
                if line.startswith("honeymesh_feed_waiters"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Load:
    """Publishers that re-send a signal until the hub acknowledges it, as a node's
    spool does, recording what the hub acknowledged and the 503s on the way."""

    base: str
    nodes: list[Node]
    acked: list[str] = field(default_factory=list)
    unavailable: list[Reply] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run_one(self, n: int, node: Node, count: int | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOAD_DEADLINE
        i = 0
        while (count is None or i < count) and not self.stop.is_set():
            signal_id, env = envelope(node, f"198.51.{n}.{i % 250}")
            i += 1
            while True:
                assert loop.time() < deadline, "the load did not finish in time"
                try:
                    reply = await node.request(
                        self.base, "POST", "/v1/signals", {"envelopes": [env]}
                    )
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)  # a connection cut: send it again
                    continue
                if reply.status in (502, 503):
                    if reply.status == 503:
                        self.unavailable.append(reply)
                    await asyncio.sleep(0.1)  # back off (the hub said Retry-After)
                    continue
                break
            assert reply.status == 202, reply.body
            assert reply.body["results"][0]["status"] in ("accepted", "duplicate"), reply.body
            self.acked.append(signal_id)

    async def run(self, count: int | None = None) -> None:
        await asyncio.gather(*(self.run_one(n, node, count) for n, node in enumerate(self.nodes)))


async def test_sigkill_of_a_replica_loses_nothing_and_the_others_serve(
    cluster: Cluster, admin: Admin, hub_env_vars: dict[str, str]
) -> None:
    nodes = [await admin.enroll_node(cluster.base) for _ in range(4)]
    load = Load(cluster.base, nodes)
    running = asyncio.create_task(load.run(count=60))
    await until(lambda: len(load.acked) >= 80 or running.done(), within=30)
    assert not running.done()
    victim = cluster.hubs[1]
    victim.signal(signal.SIGKILL)
    at_kill = len(load.acked)
    await asyncio.wait_for(running, LOAD_DEADLINE)
    assert victim.wait_exit(5) == -signal.SIGKILL
    # The two survivors took the rest, through the proxy.
    assert len(load.acked) - at_kill >= 100
    stored = await count_signals(hub_env_vars["HONEYMESH_DATABASE_URL"], load.acked)
    assert set(stored) == set(load.acked) and set(stored.values()) == {1}
    for hub in (cluster.hubs[0], cluster.hubs[2]):
        ready = await send(nodes[0].session, "GET", hub.base_url + "/readyz")
        assert ready.status == 200


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
            for hub in cluster.hubs:
                ready = await send(session, "GET", hub.base_url + "/readyz")
                assert (ready.status, ready.body["redis"]) == (200, "ok")
            redis.stop()

            async def degraded_everywhere() -> bool:
                for hub in cluster.hubs:
                    ready = await send(session, "GET", hub.base_url + "/readyz")
                    if ready.status != 200 or ready.body.get("redis") != "degraded":
                        return False
                return True

            await until(degraded_everywhere, within=10)
            for i in range(3):  # through the proxy, which still sees every replica ready
                _, reply = await publish(node, cluster.base, f"198.51.100.{60 + i}")
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


def is_unavailable(reply: Reply) -> bool:
    """503 problem+json service_unavailable with a Retry-After in seconds."""
    return (
        reply.status == 503
        and reply.code == "service_unavailable"
        and reply.headers.get("Retry-After", "").isdigit()
    )


async def test_postgres_restart_under_load_answers_503_then_recovers_and_spools_catch_up(
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
        nodes = [await admin.enroll_node(cluster.base) for _ in range(3)]
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

        load = Load(cluster.base, nodes)
        running = asyncio.create_task(load.run())
        await until(lambda: len(load.acked) >= 30 or running.done(), within=30)
        await asyncio.to_thread(own_postgres.stop)

        # Every replica says so, on its own and through the proxy.
        probe = nodes[0]

        async def every_hub_unavailable() -> bool:
            for base in [h.base_url for h in cluster.hubs] + [cluster.base]:
                _, reply = await publish(probe, base, "198.51.100.99")
                if not is_unavailable(reply):
                    return False
            return True

        await until(every_hub_unavailable, within=15)
        for hub in cluster.hubs:
            ready = await send(session, "GET", hub.base_url + "/readyz")
            assert is_unavailable(ready) and ready.body["database"] != "ok", ready.body

        # A node publishing meanwhile keeps its signals in its spool (exit 0).
        spooled = []
        for i in range(3):
            done = await cli(NODE_BIN, publish_args(f"198.51.100.{70 + i}"), node_env)
            assert done.code == 0 and status_of(done) == ["spooled"], done.out + done.err
            spooled.append(done.out.split()[0])
        acked_before = len(load.acked)

        await asyncio.to_thread(own_postgres.start)

        # The same hub processes recover by themselves, and the load goes on.
        async def all_ready() -> bool:
            for hub in cluster.hubs:
                if (await send(session, "GET", hub.base_url + "/readyz")).status != 200:
                    return False
            return True

        await until(all_ready, within=30)
        assert all(hub.proc.poll() is None for hub in cluster.hubs)
        await until(lambda: len(load.acked) >= acked_before + 30 or running.done(), within=30)
        load.stop.set()
        await asyncio.wait_for(running, LOAD_DEADLINE)
        assert load.unavailable and all(is_unavailable(r) for r in load.unavailable)

        # The spool catches up, and nothing any publisher was told is kept is missing.
        async def delivered() -> bool:
            return (await cli(NODE_BIN, ["flush"], node_env)).code == 0

        await until(delivered, within=30, interval=0.3)
        left = await cli(NODE_BIN, ["spool"], node_env)
        assert "the spool is empty" in left.out, left.out
        stored = await count_signals(dsn, spooled + load.acked)
        assert set(stored) == set(spooled) | set(load.acked)
        assert set(stored.values()) == {1}
    finally:
        cluster.proxy.stop()


def deploy_proxy_config(port: int, hub_ports: list[int], pem: Path) -> str:
    """deploy/haproxy.cfg, changed only where compose differs from this machine: the
    listening address, the certificate's path and the hubs' addresses."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    changes = {
        "bind :8443 ssl crt /certs/dev.pem": f"bind 127.0.0.1:{port} ssl crt {pem}",
        "    server hub1 hub1:8700\n    server hub2 hub2:8700\n": "".join(
            f"    server hub{i} 127.0.0.1:{p}\n" for i, p in enumerate(hub_ports, 1)
        ),
    }
    for old, new in changes.items():
        assert text.count(old) == 1, f"deploy/haproxy.cfg no longer has {old!r}"
        text = text.replace(old, new)
    return text


async def test_the_deploy_proxy_terminates_tls_and_hands_the_hubs_the_real_client(
    cluster: Cluster, peers: dict[str, aiohttp.ClientSession], tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    made = await asyncio.to_thread(
        subprocess.run,
        ["sh", str(DEPLOY / "dev-cert.sh"), str(certs)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    port = devservices.free_port()
    (tmp_path / "deploy-proxy").mkdir()
    config = deploy_proxy_config(port, [h.port for h in cluster.hubs[:2]], certs / "dev.pem")
    proxy = Proxy(tmp_path / "deploy-proxy", port, [], config=config, scheme="https")
    try:
        client = peers["127.0.0.5"]

        async def serving() -> bool:
            reply = await send(client, "GET", proxy.base_url + "/v1/hub")
            return reply.status == 200 and reply.body["api"] == "v1"

        await until(serving, within=15)  # once its health checks pass
        with pytest.raises(aiohttp.ClientError):  # TLS only
            await send(client, "GET", f"http://127.0.0.1:{port}/v1/hub")
        codes = await enroll_attempts(client, proxy.base_url, 11, spoof="198.51.100.{i}")
        assert refused_at_the_limit(codes), codes
        assert 429 not in await enroll_attempts(peers["127.0.0.6"], proxy.base_url, 2)
    finally:
        proxy.stop()
