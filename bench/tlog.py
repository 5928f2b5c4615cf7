"""Transparency log benchmark (PROTOCOL.md 15 r2, issue 17): proof latency at 1,000,000
leaves, and a node's verification CPU per 1,000 feed events.

The log is filled by the hub's own append (services/tlog.append, in batches of 1,000
events as the sequencer gives them), in one transaction a batch, against a durable
throwaway PostgreSQL; then inclusion and consistency proofs, frontiers and checkpoints
are asked of `honeymesh-hub serve --workers 2` with a reader key, at concurrency 8.
The node's cost is logcheck.check_delta on pages of 1,000 events, CPU time.

    python -m bench.tlog                  # about three minutes
    python -m bench.tlog --leaves 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.feed import setup
from bench.publish import create_admin_token, hub_env, start_hub, wait_ready, with_services
from bench.targets import Target, exit_status, report
from honeymesh_client import logcheck
from honeymesh_client.logcheck import LogRange
from honeymesh_client.protocol import merkle, note
from honeymesh_client.protocol.tlogleaf import leaf_bytes
from honeymesh_hub.services import tlog
from honeymesh_hub.tlog import LogKey

BATCH = 1000
CONCURRENCY = 8
TARGET_P99_MS = 50.0


def _entry(i: int) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "indicator": {"type": "ip", "value": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"},
        "scope": "mesh",
        "scenarios": ["ssh/brute-force"],
        "confidence": 90,
        "reporters": 1,
        "approved_at": "2026-12-07T00:00:00Z",
        "expires_at": "2026-12-08T00:00:00Z",
        "origin": "review",
    }


async def fill(dsn: str, key: LogKey, leaves: int) -> float:
    """Append `leaves` events to the mesh log as the sequencer does; seconds taken."""
    conn = await asyncpg.connect(dsn)
    start = datetime(2026, 12, 7, tzinfo=UTC)
    began = time.perf_counter()
    try:
        for base in range(0, leaves, BATCH):
            items = [
                ("mesh", "added", _entry(i), None, start + timedelta(microseconds=i))
                for i in range(base, min(base + BATCH, leaves))
            ]
            async with conn.transaction():
                await tlog.append(conn, key, items, start)
    finally:
        await conn.close()
    return time.perf_counter() - began


async def latency(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str], size: int, count: int
) -> dict[str, list[float]]:
    rng = random.Random(15)
    kinds = {
        "inclusion": lambda: f"proof/inclusion?index={rng.randrange(size)}&size={size}",
        "consistency": lambda: f"proof/consistency?from={rng.randrange(1, size)}&to={size}",
        "frontier": lambda: f"frontier?size={rng.randrange(size + 1)}",
        "checkpoint": lambda: "checkpoint",
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for kind, make in kinds.items():
        left = [count]

        async def worker(kind: str = kind, make: Any = make, left: list[int] = left) -> None:
            while left[0] > 0:
                left[0] -= 1
                started = time.perf_counter()
                async with http.get(f"{base}/v1/transparency/mesh/{make()}", headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{kind}: {r.status}")
                times[kind].append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return times


def node_cpu_per_1000(key: LogKey, pages: int = 20) -> float:
    """CPU seconds logcheck.check_delta takes for a page of 1,000 events."""
    verifier = note.parse_verifier_key(key.verifier_key)
    held = LogRange()
    tree = merkle.CompactRange()
    prepared = []
    for p in range(pages):
        events = []
        for i in range(p * 1000, (p + 1) * 1000):
            event = {**_entry(i), "time": f"2026-12-07T00:00:00.{i % 1000000:06d}Z"}
            event["leaf"] = {"log": "mesh", "index": i}
            events.append(event)
            tree.append(merkle.leaf_hash(leaf_bytes(event, "added")))
        checkpoint = key.checkpoint("mesh", tree.size, tree.root())
        prepared.append({"added": events, "removed": [], "checkpoints": {"mesh": checkpoint}})
    started = time.process_time()
    for page in prepared:
        held = logcheck.check_delta({"mesh": held}, page, verifier)["mesh"]
    return (time.process_time() - started) / pages


async def bench(args: argparse.Namespace, dsn: str, redis_url: str) -> int:
    import devservices

    tmp = Path(tempfile.mkdtemp(prefix="bench-tlog-"))
    env = hub_env(dsn, redis_url, tmp)
    token = create_admin_token(env)
    hub = start_hub(env, devservices.free_port(), 2, tmp / "hub.log")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await wait_ready(hub, http, 2)
            _, _, tenant_id = await setup(http, hub.base, token)
            async with http.post(
                f"{hub.base}/v1/admin/tenants/{tenant_id}/reader-keys",
                json={"name": "bench"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                headers = {"X-Api-Key": (await resp.json())["key"]}
            async with http.get(f"{hub.base}/v1/transparency/logs", headers=headers) as resp:
                logs = (await resp.json())["logs"]
            conn = await asyncpg.connect(dsn)
            try:
                seed = bytes(
                    await conn.fetchval("SELECT value FROM hub_secrets WHERE name = 'log_key'")
                )
            finally:
                await conn.close()
            key = LogKey.from_seed(logs[0]["origin"].rsplit("/", 1)[0], seed)
            filled = await fill(dsn, key, args.leaves)
            print(f"  appended {args.leaves:,} leaves in {filled:.1f} s", flush=True)
            times = await latency(http, hub.base, headers, args.leaves, args.requests)
    finally:
        hub.stop()
    cpu = node_cpu_per_1000(key)
    print(f"| measure ({args.leaves:,} leaves) | p50 | p99 | target |")
    print("|---|---|---|---|")
    judged: list[Target] = []
    for kind, values in times.items():
        values.sort()
        p50 = statistics.median(values) * 1000
        p99 = values[int(len(values) * 0.99) - 1] * 1000
        judged.append(
            Target(f"{kind} p99 <= {TARGET_P99_MS:.0f} ms", f"{p99:.1f} ms", p99 <= TARGET_P99_MS)
        )
        print(f"| {kind}, concurrency {CONCURRENCY} | {p50:.1f} ms | {p99:.1f} ms | p99 <= 50 ms |")
    print(f"| appending, as the sequencer does | {filled / args.leaves * 1e6:.0f} us a leaf | | |")
    print(f"| a node's check of a 1,000-event delta page | {cpu * 1000:.1f} ms CPU | | |")
    return exit_status(report(judged))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tlog", description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=400, help="of each kind")
    args = parser.parse_args(argv)
    print(
        f"== tlog: transparency log on `honeymesh-hub serve --workers 2`, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}; PostgreSQL durable, client on this machine",
        flush=True,
    )
    return with_services("bench.tlog", lambda s: bench(args, s.dsn, s.redis_url))


if __name__ == "__main__":
    sys.exit(main())
