"""Scale-out benchmark: one, two and three replicas behind HAProxy on this machine.

Each replica is `honeymesh-hub serve --workers 1` (`--workers` to change it) on the same
PostgreSQL (durable) and Redis, behind a real HAProxy (scripts/devproxy.py, configured
as deploy/haproxy.cfg is, without TLS). Per round: single-envelope publishes at
concurrency 32 (pre-signed, bench/publish.py's machinery), then a feed of 10,000
decisions (bench/feed.py's): a whole snapshot's time and empty-delta polls per second,
all through the proxy. A first round sends the same load to one replica directly, so
the proxy hop's cost shows. On two cores the machine, not the hub, is the ceiling: the
table says what the proxy hop and more processes cost here, not how a fleet of
machines scales (each replica on its own cores does).

    python -m bench.scaleout        # about two minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from yarl import URL

from bench.feed import empty_polls, insert_decisions, pull_snapshot, setup
from bench.publish import (
    BenchServices,
    create_admin_token,
    drive,
    enroll_nodes,
    hub_env,
    indicator_pool,
    presign,
    start_hub,
    wait_ready,
    with_services,
)
from bench.targets import Target, exit_status, report

CONCURRENCY = 32
# Two replicas behind the proxy against one replica reached directly, both at
# concurrency 32 in the same run: the proxy hop and the second replica together may
# cost at most a tenth of the publishes per second.
TARGET_TWO_PROXIED = 0.9
FEED_DECISIONS = 10_000
# What one round leaves behind, cleared before the next (hub_secrets stays: the
# cursor key).
CANDIDATE_TABLES = (
    "signals, candidate_reporters, candidate_tenants, decisions, feed_log, candidates"
)
TABLES = (
    f"{CANDIDATE_TABLES}, node_keys, nodes, enrollment_tokens, api_tokens, tenants, audit_log,"
    " request_nonces"
)


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    publishes: float  # 202s per second
    p50_ms: float
    p99_ms: float
    snapshot_ms: float  # every page of FEED_DECISIONS, median of 3
    polls: float  # empty-delta polls per second


async def measure_round(
    args: argparse.Namespace, dsn: str, redis_url: str, replicas: int, proxied: bool
) -> Row:
    import devproxy
    import devservices

    tmp = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    env = hub_env(dsn, redis_url, tmp)
    token = create_admin_token(env)
    hubs = [
        start_hub(env, devservices.free_port(), args.workers, tmp / f"hub{i}.log")
        for i in range(replicas)
    ]
    proxy = None
    try:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        ) as http:
            for hub in hubs:  # `--workers 1` serves in the parent: no worker to count
                await wait_ready(hub, http, args.workers if args.workers > 1 else 0)
            base = hubs[0].base
            if proxied:
                proxy = devproxy.Proxy(tmp, devservices.free_port(), [h.port for h in hubs])
                base = proxy.base_url
            nodes = await enroll_nodes(http, hubs[0].base, token, CONCURRENCY)
            pool = presign(nodes, indicator_pool(20000), int(2500 * args.seconds) + 400, 1)
            url = URL(f"{base}/v1/signals")
            source = iter(pool)
            await drive(http, url, source, CONCURRENCY, 2.0)  # warm-up
            result = await drive(http, url, source, CONCURRENCY, args.seconds)
            if result.exhausted:
                raise RuntimeError("the pre-signed pool ran out: raise its size")
            lat = sorted(result.latencies)

            reader, _, _ = await setup(http, hubs[0].base, token)
            await truncate(dsn, CANDIDATE_TABLES)  # the publishes' candidates overlap
            await insert_decisions(dsn, 0, FEED_DECISIONS)
            snaps = [await pull_snapshot(http, base, reader) for _ in range(3)]
            if {s.count for s in snaps} != {FEED_DECISIONS}:
                raise RuntimeError(f"a snapshot held {[s.count for s in snaps]} decisions")
            polls = await empty_polls(http, base, reader, snaps[-1].cursor, args.feed_seconds)
            return Row(
                f"{replicas} {'behind the proxy' if proxied else 'direct, no proxy'}",
                result.statuses.get(202, 0) / result.elapsed,
                statistics.median(lat) * 1000,
                lat[int(0.99 * (len(lat) - 1))] * 1000,
                statistics.median(s.seconds for s in snaps) * 1000,
                polls,
            )
    finally:
        if proxy is not None:
            proxy.stop()
        for hub in hubs:
            hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        await truncate(dsn, TABLES)


async def truncate(dsn: str, tables: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {tables} CASCADE")
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed publish phase")
    parser.add_argument("--feed-seconds", type=float, default=4.0, help="timed poll phase")
    parser.add_argument("--workers", type=int, default=1, help="workers per replica")
    args = parser.parse_args(argv)
    print(
        f"== scale-out: through HAProxy to N replicas of `serve --workers {args.workers}`; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; PostgreSQL durable, "
        "Redis, proxy and client on this machine",
        flush=True,
    )
    print(
        f"{'replicas':<22}  {'publish/s':>9}  {'p50 ms':>6}  {'p99 ms':>6}  "
        f"{'snapshot ms':>11}  {'polls/s':>7}",
        flush=True,
    )

    rows: dict[tuple[int, bool], Row] = {}

    async def measure(services: BenchServices) -> int:
        for replicas, proxied in ((1, False), (1, True), (2, True), (3, True)):
            r = await measure_round(args, services.dsn, services.redis_url, replicas, proxied)
            rows[replicas, proxied] = r
            print(
                f"{r.label:<22}  {r.publishes:>9,.0f}  {r.p50_ms:>6.1f}  {r.p99_ms:>6.1f}  "
                f"{r.snapshot_ms:>11.0f}  {r.polls:>7,.0f}",
                flush=True,
            )
        return 0

    if with_services("bench.scaleout", measure):
        return 1
    print(
        f"(publishes: single envelope, concurrency {CONCURRENCY}; snapshot: all pages of "
        f"{FEED_DECISIONS:,} decisions, median of 3; polls: empty deltas, concurrency "
        f"{CONCURRENCY}; one pass, figures vary by 15-30 % with what else runs)"
    )
    direct, two = rows[1, False], rows[2, True]
    ratio = two.publishes / direct.publishes
    return exit_status(
        report(
            [
                Target(
                    f"2 replicas behind the proxy >= {TARGET_TWO_PROXIED}x the publishes/s "
                    "of 1 direct",
                    f"{ratio:.2f}x ({two.publishes:,.0f} / {direct.publishes:,.0f} publish/s)",
                    ratio >= TARGET_TWO_PROXIED,
                )
            ]
        )
    )


if __name__ == "__main__":
    sys.exit(main())
