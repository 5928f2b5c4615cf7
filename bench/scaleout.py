"""Scale-out benchmark: publish throughput of one, two and three replicas behind HAProxy.

Each replica is `honeymesh-hub serve --workers 1` on the same PostgreSQL (durable) and
Redis, all on this machine, behind a real HAProxy (scripts/devproxy.py). On two cores
the machine, not the hub, is the ceiling: the table says how much the proxy hop and
more processes cost, not how a fleet of machines scales.

    python -m bench.scaleout        # about a minute and a half
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from yarl import URL

from bench.publish import (
    BenchServices,
    create_admin_token,
    drive,
    enroll_nodes,
    hub_env,
    indicator_pool,
    presign,
    start_hub,
    with_services,
)


async def run(
    args: argparse.Namespace, dsn: str, redis_url: str
) -> list[tuple[int, float, float, float]]:
    import devproxy
    import devservices

    rows = []
    for replicas in (1, 2, 3):
        tmp = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
        env = hub_env(dsn, redis_url, tmp)
        token = create_admin_token(env)
        hubs = [
            start_hub(env, devservices.free_port(), 1, tmp / f"hub{i}.log") for i in range(replicas)
        ]
        proxy = None
        try:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
            async with aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=60)
            ) as http:
                for hub in hubs:
                    await _ready(http, hub.base)
                proxy = devproxy.Proxy(tmp, devservices.free_port(), [h.port for h in hubs])
                nodes = await enroll_nodes(http, hubs[0].base, token, 32)
                pool = presign(nodes, indicator_pool(20000), int(2500 * args.seconds) + 400, 1)
                url = URL(f"{proxy.base_url}/v1/signals")
                source = iter(pool)
                await drive(http, url, source, 32, 2.0)  # warm-up
                result = await drive(http, url, source, 32, args.seconds)
                ok = result.statuses.get(202, 0)
                lat = sorted(result.latencies)
                rows.append(
                    (
                        replicas,
                        ok / result.elapsed,
                        statistics.median(lat) * 1000,
                        lat[int(0.99 * (len(lat) - 1))] * 1000,
                    )
                )
        finally:
            if proxy is not None:
                proxy.stop()
            for hub in hubs:
                hub.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        # A fresh database for the next round: drop what this one published.
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "TRUNCATE signals, candidate_reporters, candidate_tenants, decisions, feed_log,"
                " candidates, node_keys, nodes, enrollment_tokens, api_tokens, tenants, audit_log,"
                " request_nonces CASCADE"
            )
        finally:
            await conn.close()
    return rows


async def _ready(http: aiohttp.ClientSession, base: str) -> None:
    """/readyz answers 200 (a single-process hub has no workers to count)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} was not ready within 60 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed phase per round")
    args = parser.parse_args(argv)
    print(
        f"== scale-out: single-envelope publishes, concurrency 32, through HAProxy to N "
        f"replicas of `serve --workers 1`; {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; PostgreSQL durable, Redis, proxy, client on this machine",
        flush=True,
    )
    rows: list[tuple[int, float, float, float]] = []

    async def measure(services: BenchServices) -> int:
        rows.extend(await run(args, services.dsn, services.redis_url))
        return 0

    if with_services("bench.scaleout", measure):
        return 1
    print(f"{'replicas':>8}  {'req/s':>8}  {'p50 ms':>7}  {'p99 ms':>7}")
    for replicas, rate, p50, p99 in rows:
        print(f"{replicas:>8}  {rate:>8,.0f}  {p50:>7.1f}  {p99:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
