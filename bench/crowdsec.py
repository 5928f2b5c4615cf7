"""CrowdSec bouncer benchmark (PROTOCOL.md 13.1, issue 15): a 100,000-decision startup
answer to one bouncer alone and to 100 bouncers starting at once (time until every one
has it whole, hub CPU, peak hub RSS against the 300 MB bound), then empty stream polls
per second at concurrency 32 with those 100,000 active.

Against `honeymesh-hub serve --workers 2` with PostgreSQL (durable) and Redis on this
machine. Each bouncer is a reader key of its own (100 is a tenant's cap), asking as
Go's HTTP client does, with `Accept-Encoding: gzip`; the client reads each answer's
bytes without decompressing it (a bouncer's own cost), and checks one answer whole.

    python -m bench.crowdsec               # about a minute
    python -m bench.crowdsec --decisions 20000 --bouncers 20
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.feed import insert_decisions, rss_mb, setup
from bench.publish import (
    cpu_seconds,
    create_admin_token,
    hub_env,
    process_tree,
    start_hub,
    wait_ready,
    with_services,
)
from bench.targets import Target, exit_status, report

CONCURRENCY = 32
STREAM = "/crowdsec/v1/decisions/stream"
RSS_BOUND_MB = 300.0


@dataclass
class Startup:
    seconds: float
    cpu: float
    peak_rss_mb: float
    wire_mb: float


async def startup(
    http: aiohttp.ClientSession, base: str, hub_pid: int, keys: list[str], expected: int
) -> Startup:
    """Every key's startup answer at once: until the last byte of the last one."""
    pids = process_tree(hub_pid)
    workers = [p for p in pids if p != hub_pid]
    before = sum(cpu_seconds(pids).values())
    peak = rss_mb(workers)
    running = True

    async def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, rss_mb(workers))
            await asyncio.sleep(0.02)

    async def one(key: str) -> bytes:
        headers = {"X-Api-Key": key, "Accept-Encoding": "gzip"}
        async with http.get(
            f"{base}{STREAM}?startup=true", headers=headers, auto_decompress=False
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"startup answered {resp.status}: {await resp.text()}")
            body = await resp.read()
            return gzip.decompress(body) if resp.headers.get("Content-Encoding") else body

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    try:
        bodies = await asyncio.gather(*(one(k) for k in keys))
    finally:
        running = False
        await sampler
    seconds = time.perf_counter() - started
    cpu = sum(cpu_seconds(pids).values()) - before
    whole = json.loads(bodies[0])
    if len(whole["new"]) != expected or whole["deleted"] != []:
        raise RuntimeError(f"a startup answer held {len(whole['new'])} decisions, not {expected}")
    if len({len(b) for b in bodies}) != 1:
        raise RuntimeError("the bouncers were not all given the same answer")
    return Startup(seconds, cpu, peak, len(bodies[0]) / 1e6)


async def empty_polls(
    http: aiohttp.ClientSession, base: str, keys: list[str], seconds: float
) -> float:
    stop = time.monotonic() + seconds
    done = 0

    async def worker(key: str) -> None:
        nonlocal done
        headers = {"X-Api-Key": key, "Accept-Encoding": "gzip"}
        while time.monotonic() < stop:
            async with http.get(f"{base}{STREAM}?startup=false", headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200 or json.loads(body) != {"new": [], "deleted": []}:
                    raise RuntimeError(f"not an empty poll: {resp.status} {body[:200]!r}")
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(keys[i % len(keys)]) for i in range(CONCURRENCY)))
    return done / (time.monotonic() - started)


async def bench(args: argparse.Namespace, dsn: str, redis_url: str) -> int:
    import devservices

    tmp = Path(tempfile.mkdtemp(prefix="bench-crowdsec-"))
    env = hub_env(dsn, redis_url, tmp)
    token = create_admin_token(env)
    hub = start_hub(env, devservices.free_port(), 2, tmp / "hub.log")
    try:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await wait_ready(hub, http, 2)
            _, _, tenant_id = await setup(http, hub.base, token)
            auth = {"Authorization": f"Bearer {token}"}
            keys = []
            for i in range(args.bouncers):
                async with http.post(
                    f"{hub.base}/v1/admin/tenants/{tenant_id}/reader-keys",
                    json={"name": f"bouncer-{i}"},
                    headers=auth,
                ) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"reader key: {resp.status} {await resp.text()}")
                    keys.append((await resp.json())["key"])
            await insert_decisions(dsn, 0, args.decisions)
            alone = []
            for _ in range(args.runs):
                alone.append(await startup(http, hub.base, hub.proc.pid, keys[:1], args.decisions))
            crowd = []
            for _ in range(args.runs):
                crowd.append(await startup(http, hub.base, hub.proc.pid, keys, args.decisions))
            rate = await empty_polls(http, hub.base, keys, args.seconds)
    finally:
        hub.stop()
    one = min(alone, key=lambda s: s.seconds)
    many = min(crowd, key=lambda s: s.seconds)
    peak = max(s.peak_rss_mb for s in crowd)
    n = args.bouncers
    print(f"| measure ({args.decisions:,} active decisions) | figure | target |")
    print("|---|---|---|")
    print(
        f"| one bouncer's startup answer | {one.seconds:.2f} s, hub CPU {one.cpu:.2f} s, "
        f"{one.wire_mb:.1f} MB JSON (gzip on the wire) | - |"
    )
    print(
        f"| {n} bouncers starting at once, until all have it | {many.seconds:.2f} s "
        f"({many.seconds / one.seconds:.1f}x one alone), hub CPU {many.cpu:.1f} s "
        f"({many.cpu / one.cpu:.1f}x one) | - |"
    )
    print(f"| peak hub RSS (workers) meanwhile | {peak:.0f} MB | <= {RSS_BOUND_MB:.0f} MB |")
    print(f"| empty stream polls, concurrency {CONCURRENCY} | {rate:,.0f}/s | - |")
    return exit_status(
        report(
            [
                Target(
                    f"peak hub RSS, {n} bouncers starting, <= {RSS_BOUND_MB:.0f} MB",
                    f"{peak:.0f} MB",
                    peak <= RSS_BOUND_MB,
                )
            ]
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crowdsec", description=__doc__)
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--bouncers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="the poll phase's length")
    args = parser.parse_args(argv)
    print(
        f"== crowdsec: bouncer streams on `honeymesh-hub serve --workers 2`, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; PostgreSQL durable, "
        "Redis, client on this machine",
        flush=True,
    )
    return with_services("bench.crowdsec", lambda s: bench(args, s.dsn, s.redis_url))


if __name__ == "__main__":
    sys.exit(main())
