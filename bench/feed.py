"""Feed benchmark: snapshot, empty-delta polls and long-poll fan-out (PROTOCOL.md 8).

Against `honeymesh-hub serve --workers 2` with PostgreSQL (durable) and Redis on this
machine. Decisions are inserted straight into the database (the publish path has its
own benchmark); nodes for the fan-out too, with cursors made by the hub's own cursor
module and key, so set-up takes seconds. Every measured request is signed before it
is timed.

    python -m bench.feed            # about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
from yarl import URL

from bench.publish import (
    BenchNode,
    create_admin_token,
    enroll_nodes,
    hub_env,
    start_hub,
    wait_ready,
    with_services,
)
from honeymesh_client.protocol.dsse import build_envelope
from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request
from honeymesh_hub.cursor import Position, encode

TARGETS = {
    "snapshot": "<= 1.0 s",
    "polls": ">= 2,000/s",
    "fanout": "p99 <= 500 ms",
    "rss": "<= 300 MB",
}


async def insert_decisions(dsn: str, start: int, count: int) -> None:
    """`count` approved mesh decisions on distinct addresses from 45.0.0.0 + start."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO candidates (id, indicator_type, indicator_value, network, scope,
                scope_key, state, origin, scenarios, reporters, tenants, signal_count,
                max_confidence, max_ttl_seconds, first_seen, last_seen, expires_at,
                approved_at, decided_at, created_at, updated_at)
            SELECT gen_random_uuid(), 'ip', host('45.0.0.0'::inet + i),
                   ('45.0.0.0'::inet + i)::cidr, 'mesh', 'mesh', 'approved', 'review',
                   ARRAY['ssh/brute-force'], 1, 1, 1, 80,
                   3600, now(), now(), now() + interval '1 day', now(), now(), now(), now()
            FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS i
            """,
            start,
            count,
        )
        await conn.execute("ANALYZE candidates")
    finally:
        await conn.close()


def signed_get(node: BenchNode, target: str) -> tuple[URL, dict[str, str]]:
    path, _, query = target.partition("?")
    return URL(target, encoded=True), sign_request(node.key, "GET", path, query, None)


async def pull_snapshot(
    http: aiohttp.ClientSession, base: str, node: BenchNode
) -> tuple[float, int, str]:
    """Every page of a snapshot: seconds, decisions, the cursor that follows."""
    started = time.perf_counter()
    count, cursor = 0, ""
    while True:
        target = "/v1/feed?limit=5000" + (f"&cursor={cursor}" if cursor else "")
        url, headers = signed_get(node, target)
        async with http.get(URL(base).join(url), headers=headers) as resp:
            page = json.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"feed answered {resp.status}: {page}")
        count += len(page["added"])
        cursor = page["cursor"]
        if not page["more"]:
            return time.perf_counter() - started, count, cursor


async def empty_polls(
    http: aiohttp.ClientSession, base: str, node: BenchNode, cursor: str, seconds: float
) -> float:
    """Empty-delta polls per second at concurrency 32 (requests signed beforehand)."""
    target = f"/v1/feed?limit=1000&cursor={cursor}"
    pool = iter([signed_get(node, target) for _ in range(int(6000 * seconds))])
    done = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        for url, headers in pool:
            async with http.get(URL(base).join(url), headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200 or b'"added": []' not in body:
                    raise RuntimeError(f"poll answered {resp.status}: {body[:200]!r}")
            done += 1
            if time.perf_counter() >= deadline:
                return

    await asyncio.gather(*(worker() for _ in range(32)))
    return done / (time.perf_counter() - started)


async def make_nodes(dsn: str, tenant_id: str, count: int) -> list[BenchNode]:
    """Enrolled nodes written straight into the tables enrollment writes."""
    nodes = [BenchNode(NodeKey.generate(), str(uuid.uuid4())) for _ in range(count)]
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO nodes (id, tenant_id, name, created_at) VALUES ($1, $2, 'fan', $3)",
            [(uuid.UUID(n.node_id), uuid.UUID(tenant_id), now) for n in nodes],
        )
        await conn.executemany(
            "INSERT INTO node_keys (keyid, node_id, public_key, created_at)"
            " VALUES ($1, $2, $3, $4)",
            [(n.key.keyid, uuid.UUID(n.node_id), n.key.public_raw, now) for n in nodes],
        )
    finally:
        await conn.close()
    return nodes


async def head_cursors(dsn: str, nodes: list[BenchNode]) -> list[str]:
    """A delta cursor at the log's head for each node, as the hub would make it."""
    conn = await asyncpg.connect(dsn)
    try:
        key = bytes(await conn.fetchval("SELECT value FROM hub_secrets WHERE name = 'cursor_mac'"))
        xmin = int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
    finally:
        await conn.close()
    return [encode(Position("delta", xmin, 0), uuid.UUID(n.node_id), key) for n in nodes]


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


async def waiters(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("honeymesh_feed_waiters")
    )


async def fan_out(
    http: aiohttp.ClientSession,
    base: str,
    dsn: str,
    tenant_id: str,
    publisher: BenchNode,
    count: int,
    worker_pids: list[int],
) -> tuple[list[float], float]:
    nodes = await make_nodes(dsn, tenant_id, count)
    cursors = await head_cursors(dsn, nodes)
    requests = [
        signed_get(n, f"/v1/feed?wait=30&cursor={c}") for n, c in zip(nodes, cursors, strict=True)
    ]
    arrived: list[float] = []

    async def wait_one(url: URL, headers: dict[str, str]) -> None:
        async with http.get(URL(base).join(url), headers=headers) as resp:
            page = json.loads(await resp.read())
            if resp.status != 200 or len(page["added"]) != 1:
                raise RuntimeError(f"waiter answered {resp.status}: {str(page)[:200]}")
        arrived.append(time.perf_counter())

    tasks = [asyncio.create_task(wait_one(u, h)) for u, h in requests]
    deadline = time.monotonic() + 60
    while await waiters(http, base) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the waiters never all registered")
        await asyncio.sleep(0.1)
    rss = rss_mb(worker_pids)
    body = json.dumps(
        {
            "envelopes": [
                build_envelope(
                    publisher.key,
                    json.dumps(
                        {
                            "v": 1,
                            "id": str(uuid.uuid4()),
                            "node_id": publisher.node_id,
                            "observed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "indicator": {"type": "ip", "value": "185.1.2.3"},
                            "scenario": "redis/unauthenticated-config-set",
                            "action": "blocked",
                            "mode": "enforce",
                            "confidence": 95,
                            "ttl_seconds": 3600,
                            "share": "mesh",
                        }
                    ).encode(),
                )
            ]
        }
    ).encode()
    headers = sign_request(publisher.key, "POST", "/v1/signals", "", body)
    headers["Content-Type"] = "application/json"
    async with http.post(f"{base}/v1/signals", data=body, headers=headers) as resp:
        answer = json.loads(await resp.read())
        committed = time.perf_counter()
        if answer["results"][0].get("candidate_state") != "approved":
            raise RuntimeError(f"the approval did not happen: {answer}")
    await asyncio.gather(*tasks)
    return sorted(t - committed for t in arrived), rss


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def bench(args: argparse.Namespace, dsn: str, redis_url: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    env = hub_env(dsn, redis_url, tmp)
    token = create_admin_token(env)
    import devservices

    hub = start_hub(env, devservices.free_port(), 2, tmp / "hub.log")
    rows: list[tuple[str, str, str]] = []
    try:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            await wait_ready(hub, http, 2)
            base = hub.base
            [reader, publisher] = await enroll_nodes(http, base, token, 2)
            conn = await asyncpg.connect(dsn)
            try:
                tenant_id = str(
                    await conn.fetchval(
                        "SELECT tenant_id FROM nodes WHERE id = $1", uuid.UUID(reader.node_id)
                    )
                )
                await conn.execute(
                    "UPDATE nodes SET trusted = true WHERE id = $1", uuid.UUID(publisher.node_id)
                )
                # Neither node has made a signed request yet, so no replica caches them.
                await conn.execute(
                    "UPDATE tenants SET limits = limits || $2::jsonb WHERE id = $1",
                    uuid.UUID(tenant_id),
                    json.dumps(
                        {"pull_per_minute": 100_000_000, "trusted_approvals_per_day": 10**6}
                    ),
                )
            finally:
                await conn.close()

            await insert_decisions(dsn, 0, 1000)
            seconds, count, cursor = await pull_snapshot(http, base, reader)
            rows.append((f"snapshot of {count:,}", f"{seconds * 1000:.0f} ms", ""))
            rate = await empty_polls(http, base, reader, cursor, args.seconds)
            rows.append(
                ("empty-delta polls, 1,000 active, c=32", f"{rate:,.0f}/s", TARGETS["polls"])
            )

            await insert_decisions(dsn, 1000, 99_000)
            seconds, count, cursor = await pull_snapshot(http, base, reader)
            rows.append(
                (
                    f"snapshot of {count:,}, all pages",
                    f"{seconds * 1000:.0f} ms",
                    TARGETS["snapshot"],
                )
            )
            rate = await empty_polls(http, base, reader, cursor, args.seconds)
            rows.append(
                ("empty-delta polls, 100,000 active, c=32", f"{rate:,.0f}/s", TARGETS["polls"])
            )

            delays, rss = await fan_out(
                http, base, dsn, tenant_id, publisher, args.waiters, hub.workers()
            )
            rows.append(
                (
                    f"fan-out to {args.waiters:,} long-polls: p50 / p99 / max",
                    f"{pct(delays, 0.5) * 1000:.0f} / {pct(delays, 0.99) * 1000:.0f} / "
                    f"{delays[-1] * 1000:.0f} ms",
                    TARGETS["fanout"],
                )
            )
            rows.append(
                (f"hub workers' RSS with {args.waiters:,} waiting", f"{rss:.0f} MB", TARGETS["rss"])
            )
    finally:
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'figure':>22}  target")
    for name, figure, target in rows:
        print(f"{name.ljust(width)}  {figure:>22}  {target}")
    print("(one pass each; figures vary by 15-30 % with what else runs)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="poll phase length")
    parser.add_argument("--waiters", type=int, default=2000, help="long-polling nodes")
    args = parser.parse_args(argv)
    # 2,000 waiting connections on each side of loopback: raise the soft fd limit to
    # the hard one (the hub, started from here, inherits it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(
        f"== feed: GET /v1/feed on `honeymesh-hub serve --workers 2`, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; PostgreSQL durable, Redis, client on this machine"
        f" (fd limit {soft} -> {hard})",
        flush=True,
    )
    return with_services(
        "bench.feed", lambda services: bench(args, services.dsn, services.redis_url)
    )


if __name__ == "__main__":
    sys.exit(main())
