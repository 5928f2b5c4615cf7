"""Feed benchmark: snapshot, empty-delta polls and long-poll fan-out (PROTOCOL.md 8).

Against `honeymesh-hub serve --workers 2` with PostgreSQL (durable) and Redis on this
machine. Decisions go straight into the database, each with the feed log's `added`
event a real approval writes (the publish path has its own benchmark), so the delta
polls run against a log as long as the active set. The fan-out's 2,000 nodes are
written into the tables enrollment writes, with head cursors made by the hub's own
cursor module and key; they wait from a separate client process, so that parsing
their 2,000 answers does not delay the moment the publisher sees its 202. Every
measured request is signed before it is timed.

    python -m bench.feed                    # about a minute
    python -m bench.feed --hub-nofile 1024  # the hub under a default fd limit
    python -m bench.feed --swarm 50         # 50 nodes pull one 100,000 snapshot at once

`--swarm N` measures something else: the hub's CPU (utime + stime of every hub
process, from /proc) and peak RSS (its workers' VmRSS summed, sampled every 20 ms)
while one node pulls the whole snapshot of 100,000 decisions, then while N nodes of the
same tenant pull it concurrently (each from its own first page, as after an outage).
The client admits gzip as aiohttp does (`--identity`: it does not).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
from yarl import URL

from bench.publish import (
    LIMITS,
    BenchNode,
    cpu_seconds,
    create_admin_token,
    enroll_nodes,
    hub_env,
    process_tree,
    start_hub,
    start_py_spy,
    summarize_profile,
    system_seconds,
    wait_ready,
    with_services,
)
from bench.targets import Target, exit_status, report
from honeymesh_client.protocol.dsse import build_envelope
from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request
from honeymesh_hub.cursor import Position, encode

SNAPSHOT_S = 1.0  # a snapshot of 100,000, every page
POLLS_PER_S = 2000.0  # empty-delta polls, at 1,000 and at 100,000 active
FANOUT_P99_S = 0.250  # 202 -> answer, the target (was 500 ms)
RSS_MB = 300.0  # the hub workers' RSS, 2,000 waiting; and a swarm's peak
SWARM_CPU_RATIO = 3.0  # N concurrent pulls' hub CPU against one pull's, alone
TARGETS = {
    "snapshot": f"<= {SNAPSHOT_S:.1f} s",
    "polls": f">= {POLLS_PER_S:,.0f}/s",
    "fanout": f"p99 <= {FANOUT_P99_S * 1000:.0f} ms",
    "rss": f"<= {RSS_MB:.0f} MB",
}
CONCURRENCY = 32
FAN_INDICATOR = "185.1.2.3"

# An approved mesh decision per address from 45.0.0.0 + start, and the `added` event
# an approval writes for it (views.feed_added), in one statement and one transaction.
_INSERT_SQL = """
WITH c AS (
    INSERT INTO candidates (id, indicator_type, indicator_value, network, scope,
        scope_key, state, origin, scenarios, reporters, tenants, signal_count,
        max_confidence, max_ttl_seconds, first_seen, last_seen, expires_at,
        approved_at, decided_at, created_at, updated_at)
    SELECT gen_random_uuid(), 'ip', host('45.0.0.0'::inet + i),
           ('45.0.0.0'::inet + i)::cidr, 'mesh', 'mesh', 'approved', 'review',
           ARRAY['ssh/brute-force'], 1, 1, 1, 80,
           3600, now(), now(), now() + interval '1 day', now(), now(), now(), now()
    FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS i
    RETURNING id, indicator_type, indicator_value, scope, scope_key, scenarios,
              max_confidence, reporters, approved_at, expires_at, origin
)
INSERT INTO feed_log (candidate_id, kind, scope_key, entry, time)
SELECT id, 'added', scope_key,
       jsonb_build_object(
           'id', id,
           'indicator', jsonb_build_object('type', indicator_type, 'value', indicator_value),
           'scope', scope, 'scenarios', to_jsonb(scenarios), 'confidence', max_confidence,
           'reporters', reporters,
           'approved_at', to_char(approved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'expires_at', to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'origin', origin),
       now()
FROM c
"""


async def insert_decisions(dsn: str, start: int, count: int) -> None:
    """Approved decisions with their feed events, straight into the database; returns
    once the running hub's sequencer has sequenced and logged them (the feed and the
    readers serve sequenced events only), so no measurement includes that."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_INSERT_SQL, start, count)
        await conn.execute("ANALYZE candidates")
        await conn.execute("ANALYZE feed_log")
    finally:
        await conn.close()
    await sequenced(dsn, 600)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE sequenced")
    finally:
        await conn.close()


async def sequenced(dsn: str, seconds: float) -> None:
    """Until every feed event is sequenced, or RuntimeError after `seconds`."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            left = await conn.fetchval(
                "SELECT count(*) FROM feed_log WHERE (xid, seq) >"
                " (SELECT xid, seq FROM sequencer_state)"
            )
            if left == 0:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the sequencer did not catch up")
    finally:
        await conn.close()


def signed_get(node: BenchNode, target: str) -> tuple[str, dict[str, str]]:
    path, _, query = target.partition("?")
    return target, sign_request(node.key, "GET", path, query, None)


def full_url(base: str, target: str) -> URL:
    return URL(base + target, encoded=True)


@dataclass
class Snapshot:
    seconds: float  # every page, signing and parsing included
    parsing: float  # of which the client's json.loads
    count: int
    pages: int
    cursor: str  # the last page's: it continues with changes


async def pull_snapshot(
    http: aiohttp.ClientSession, base: str, node: BenchNode, extra: dict[str, str] | None = None
) -> Snapshot:
    """Every page of a snapshot, as a node pulls it (signed, parsed)."""
    started = time.perf_counter()
    parsing = 0.0
    count, pages, cursor = 0, 0, ""
    while True:
        target, headers = signed_get(
            node, "/v1/feed?limit=5000" + (f"&cursor={cursor}" if cursor else "")
        )
        headers.update(extra or {})
        async with http.get(full_url(base, target), headers=headers) as resp:
            raw = await resp.read()
            parse_started = time.perf_counter()
            page = json.loads(raw)
            parsing += time.perf_counter() - parse_started
            if resp.status != 200:
                raise RuntimeError(f"feed answered {resp.status}: {page}")
        count += len(page["added"])
        pages += 1
        cursor = page["cursor"]
        if not page["more"]:
            return Snapshot(time.perf_counter() - started, parsing, count, pages, cursor)


async def empty_polls(
    http: aiohttp.ClientSession, base: str, node: BenchNode, cursor: str, seconds: float
) -> float:
    """Empty-delta polls per second at concurrency 32 (each signed beforehand: every
    request needs a fresh nonce)."""
    target = f"/v1/feed?limit=1000&cursor={cursor}"
    warm = 10 * CONCURRENCY
    signed = [signed_get(node, target) for _ in range(warm + int(8000 * seconds))]
    pool = iter(signed)
    done = 0
    deadline = 0.0

    async def worker(until: int | None) -> None:
        nonlocal done
        for n, (url, headers) in enumerate(pool):
            async with http.get(full_url(base, url), headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200 or b'"added": [], "removed": []' not in body:
                    raise RuntimeError(f"poll answered {resp.status}: {body[:300]!r}")
            if until is not None:
                if n + 1 >= until:
                    return
                continue
            done += 1
            if time.perf_counter() >= deadline:
                return

    # Connections opened and the hub's caches warm before the clock starts.
    await asyncio.gather(*(worker(warm // CONCURRENCY) for _ in range(CONCURRENCY)))
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(worker(None) for _ in range(CONCURRENCY)))
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
    """A delta cursor at the log's head for each node, as the hub makes it at the end
    of a snapshot (services/feed.py): the xmin of a snapshot taken now."""
    conn = await asyncpg.connect(dsn)
    try:
        key = bytes(await conn.fetchval("SELECT value FROM hub_secrets WHERE name = 'cursor_mac'"))
        xmin = int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
    finally:
        await conn.close()
    return [encode(Position("delta", xmin, 0), uuid.UUID(n.node_id), key) for n in nodes]


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb(pids: list[int]) -> float:
    return sum(_proc_status(pid, "VmRSS") for pid in pids) / 1024


def fd_soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def feed_waiters(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("honeymesh_feed_waiters")
    )


# --------------------------------------------------------------------------- waiter process


async def _wait_all(
    base: str, requests: list[tuple[str, dict[str, str]]], seconds: float
) -> tuple[list[float], list[str]]:
    arrived: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=seconds)
    ) as http:

        async def one(target: str, headers: dict[str, str]) -> None:
            try:
                async with http.get(full_url(base, target), headers=headers) as resp:
                    body = await resp.read()
                    at = time.monotonic()
                    page = json.loads(body)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            added = page.get("added") or []
            if resp.status != 200 or [a["indicator"]["value"] for a in added] != [FAN_INDICATOR]:
                errors.append(f"{resp.status}: {body[:200]!r}")
                return
            arrived.append(at)

        await asyncio.gather(*(one(t, h) for t, h in requests))
    return arrived, errors


def waiter_process(
    base: str, requests: list[tuple[str, dict[str, str]]], seconds: float
) -> tuple[list[float], list[str]]:
    """Hold every request open until its answer: CLOCK_MONOTONIC arrival times (one
    clock for every process of the machine) and what went wrong."""
    return asyncio.run(_wait_all(base, requests, seconds))


# --------------------------------------------------------------------------- fan-out


def approval_body(publisher: BenchNode) -> bytes:
    signal = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "node_id": publisher.node_id,
        "observed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "indicator": {"type": "ip", "value": FAN_INDICATOR},
        "scenario": "redis/unauthenticated-config-set",
        "action": "blocked",
        "mode": "enforce",
        "confidence": 95,
        "ttl_seconds": 3600,
        "share": "mesh",
    }
    envelope = build_envelope(publisher.key, json.dumps(signal).encode())
    return json.dumps({"envelopes": [envelope]}).encode()


@dataclass
class FanOut:
    delays: list[float]  # seconds from the publish's 202 to each waiter's answer
    rss_idle: float  # the workers' MB before the waiters came
    rss_waiting: float  # and with every one of them waiting
    fds: list[int]  # open fds of each worker with everyone waiting
    fd_limits: list[int]  # each worker's soft RLIMIT_NOFILE
    sequenced: float  # seconds from the 202 to the sequencer's notification


async def fan_out(
    http: aiohttp.ClientSession,
    base: str,
    dsn: str,
    tenant_id: str,
    publisher: BenchNode,
    count: int,
    worker_pids: list[int],
    profile: Path | None = None,
) -> FanOut:
    nodes = await make_nodes(dsn, tenant_id, count)
    cursors = await head_cursors(dsn, nodes)
    requests = [
        signed_get(n, f"/v1/feed?wait=30&cursor={c}") for n, c in zip(nodes, cursors, strict=True)
    ]
    body = approval_body(publisher)
    headers = sign_request(publisher.key, "POST", "/v1/signals", "", body)
    headers["Content-Type"] = "application/json"
    rss_idle = rss_mb(worker_pids)
    fd_limits = [fd_soft_limit(pid) for pid in worker_pids]

    loop = asyncio.get_running_loop()
    listener = await asyncpg.connect(dsn)
    heard: asyncio.Future[float] = loop.create_future()

    def on_sequenced(*_args: object) -> None:
        if not heard.done():
            heard.set_result(time.monotonic())

    await listener.add_listener("honeymesh_sequenced", on_sequenced)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        answers = loop.run_in_executor(pool, waiter_process, base, requests, 60.0)
        deadline = time.monotonic() + 60
        while (waiting := await feed_waiters(http, base)) < count:
            if answers.done() or time.monotonic() > deadline:
                _, errors = await answers if answers.done() else ([], [])
                raise RuntimeError(
                    f"only {waiting:.0f} of {count} waiters registered; "
                    f"client errors: {errors[:3]}; worker fds "
                    f"{[open_fds(p) for p in worker_pids]} of {fd_limits}"
                )
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # let the workers settle before reading their memory
        rss_waiting = rss_mb(worker_pids)
        fds = [open_fds(pid) for pid in worker_pids]
        spies = []
        if profile is not None:
            spies = start_py_spy(worker_pids, 3, profile, rate=1000)
            await asyncio.sleep(1.0)  # py-spy attached
        async with http.post(f"{base}/v1/signals", data=body, headers=headers) as resp:
            accepted = time.monotonic()
            answer = json.loads(await resp.read())
        if resp.status != 202 or answer["results"][0].get("candidate_state") != "approved":
            raise RuntimeError(f"the approval did not happen: {resp.status} {answer}")
        arrived, errors = await answers
    try:  # a hub without the notification (before the log) leaves it unknown
        sequenced_at = await asyncio.wait_for(heard, 2)
    except TimeoutError:
        sequenced_at = float("nan")
    await listener.close()
    for spy in spies:
        spy.wait()
    if profile is not None:
        print(summarize_profile(profile, top=30))
    if errors or len(arrived) != count:
        raise RuntimeError(f"{len(errors)} waiters failed, e.g. {errors[:3]}")
    delays = sorted(t - accepted for t in arrived)
    return FanOut(delays, rss_idle, rss_waiting, fds, fd_limits, sequenced_at - accepted)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


async def setup(
    http: aiohttp.ClientSession, base: str, token: str
) -> tuple[BenchNode, BenchNode, str]:
    """A reader and a trusted publisher in an enterprise tenant with `mesh`; limits
    raised by PATCH before either makes a signed request (no replica caches them)."""
    [reader, publisher] = await enroll_nodes(http, base, token, 2)
    auth = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{base}/v1/admin/nodes", headers=auth) as resp:
        listed = (await resp.json())["nodes"]
    [tenant_id] = {n["tenant_id"] for n in listed if n["node_id"] == reader.node_id}
    limits = {**LIMITS, "pull_per_minute": 100_000_000, "trusted_approvals_per_day": 10**6}
    for url, patch in (
        (f"{base}/v1/admin/tenants/{tenant_id}", {"limits": limits}),
        (f"{base}/v1/admin/nodes/{publisher.node_id}", {"trusted": True}),
    ):
        async with http.patch(url, json=patch, headers=auth) as resp:
            if resp.status != 200:
                raise RuntimeError(f"PATCH {url} answered {resp.status}: {await resp.text()}")
    return reader, publisher, tenant_id


async def bench(args: argparse.Namespace, dsn: str, redis_url: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    env = hub_env(dsn, redis_url, tmp)
    token = create_admin_token(env)
    import devservices

    # The hub inherits the soft fd limit it starts with; the client keeps the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.hub_nofile or hard, hard))
    try:
        hub = start_hub(env, devservices.free_port(), 2, tmp / "hub.log")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    judged: list[Target] = []
    failed = False
    try:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            await wait_ready(hub, http, 2)
            base = hub.base
            reader, publisher, tenant_id = await setup(http, base, token)

            # 1,000 active, then 99,000 more: 100,000.
            sizes = ((0, 1000, 1000), (1000, 99_000, 100_000))
            for start, added, active in sizes[: 0 if args.fanout_only else 2]:
                await insert_decisions(dsn, start, added)
                runs = [await pull_snapshot(http, base, reader) for _ in range(args.snapshots)]
                snap = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
                if snap.count != active:
                    raise RuntimeError(f"the snapshot held {snap.count} decisions, not {active}")
                times = [r.seconds for r in runs]
                rows.append(
                    (
                        f"snapshot of {snap.count:,}, all {snap.pages} pages (limit 5000): "
                        f"median (min-max) of {len(runs)}",
                        f"{ms(snap.seconds)} ms ({ms(min(times))}-{ms(max(times))})",
                        TARGETS["snapshot"] if active > 1000 else "",
                    )
                )
                if active > 1000:
                    judged.append(
                        Target(
                            f"snapshot of {active:,} {TARGETS['snapshot']}",
                            f"{snap.seconds:.2f} s (median)",
                            snap.seconds <= SNAPSHOT_S,
                        )
                    )
                    notes.append(
                        f"snapshot of {snap.count:,}: the client's json.loads took "
                        f"{ms(snap.parsing)} of its {ms(snap.seconds)} ms"
                    )
                rate = await empty_polls(http, base, reader, snap.cursor, args.seconds)
                rows.append(
                    (
                        f"empty-delta polls, {active:,} active ({active:,} in the log), "
                        f"c={CONCURRENCY}",
                        f"{rate:,.0f}/s",
                        TARGETS["polls"],
                    )
                )
                judged.append(
                    Target(
                        f"empty-delta polls, {active:,} active, {TARGETS['polls']}",
                        f"{rate:,.0f}/s",
                        rate >= POLLS_PER_S,
                    )
                )

            pids = hub.workers()
            fan = await fan_out(
                http, base, dsn, tenant_id, publisher, args.waiters, pids, args.py_spy
            )
            d = fan.delays
            judged.append(
                Target(
                    f"fan-out to {args.waiters:,}, {TARGETS['fanout']}",
                    f"{ms(pct(d, 0.99))} ms",
                    pct(d, 0.99) <= FANOUT_P99_S,
                )
            )
            judged.append(
                Target(
                    f"hub workers' RSS, {args.waiters:,} waiting, {TARGETS['rss']}",
                    f"{fan.rss_waiting:.0f} MB",
                    fan.rss_waiting <= RSS_MB,
                )
            )
            rows.append(
                (
                    f"fan-out, {args.waiters:,} long-polls, 202 -> answer: p50 / p99 / max",
                    f"{ms(pct(d, 0.5))} / {ms(pct(d, 0.99))} / {ms(d[-1])} ms",
                    TARGETS["fanout"],
                )
            )
            rows.append(
                (
                    f"hub workers' RSS, {args.waiters:,} waiting (idle before)",
                    f"{fan.rss_waiting:.0f} MB ({fan.rss_idle:.0f})",
                    TARGETS["rss"],
                )
            )
            notes.append(
                f"hub workers' open fds with everyone waiting: {fan.fds} "
                f"(soft limit {fan.fd_limits}); after the 202: sequenced {ms(fan.sequenced)} ms, "
                f"first answer {ms(d[0])} ms"
            )
    except Exception:
        failed = True
        print(f"hub log ({tmp / 'hub.log'}, kept), last lines:\n{hub.log_tail()}", file=sys.stderr)
        raise
    finally:
        hub.stop()
        if not failed:
            shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'figure':>22}  target")
    for name, figure, target in rows:
        print(f"{name.ljust(width)}  {figure:>22}  {target}")
    for note in notes:
        print(note)
    print("(one pass; figures vary by 15-30 % with what else runs)")
    return exit_status(report(judged))


# --------------------------------------------------------------------------- swarm


@dataclass
class Swarm:
    cpu: float  # hub CPU seconds, every process
    rss_peak: float  # MB, the workers' summed VmRSS at its highest
    seconds: float
    count: int  # decisions each puller ended with
    kernel: float  # the part of `cpu` spent in the kernel (socket writes, mostly)


async def swarm_pull(
    http: aiohttp.ClientSession,
    base: str,
    hub_pid: int,
    nodes: list[BenchNode],
    identity: bool,
    profile: Path | None = None,
) -> Swarm:
    extra = {"Accept-Encoding": "identity"} if identity else None
    pids = process_tree(hub_pid)
    spies = []
    if profile is not None:
        # The GIL's holder only: on two shared cores a worker preempted in a socket
        # write would otherwise look busy in `transport.write`.
        spies = start_py_spy([p for p in pids if p != hub_pid], 75, profile, rate=200, gil=True)
        await asyncio.sleep(1.0)  # py-spy attached
    before = sum(cpu_seconds(pids).values())
    sys_before = system_seconds(pids)
    peak = 0.0
    running = True

    async def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, rss_mb([p for p in pids if p != hub_pid]))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    runs = await asyncio.gather(*(pull_snapshot(http, base, n, extra) for n in nodes))
    seconds = time.perf_counter() - started
    running = False
    await sampler
    cpu = sum(cpu_seconds(pids).values()) - before
    kernel = system_seconds(pids) - sys_before
    for spy in spies:
        spy.wait()
    if profile is not None:
        print(f"py-spy, hub workers, {len(nodes)} pulls:\n{summarize_profile(profile)}\n")
    counts = {r.count for r in runs}
    if len(counts) != 1:
        raise RuntimeError(f"pullers ended with different sets: {sorted(counts)}")
    return Swarm(cpu, peak, seconds, counts.pop(), kernel)


async def swarm(args: argparse.Namespace, dsn: str, redis_url: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    env = hub_env(dsn, redis_url, tmp)
    token = create_admin_token(env)
    import devservices

    hub = start_hub(env, devservices.free_port(), 2, tmp / "hub.log")
    failed = False
    try:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=600)
        ) as http:
            await wait_ready(hub, http, 2)
            base = hub.base
            reader, _, tenant_id = await setup(http, base, token)
            await insert_decisions(dsn, 0, 100_000)
            nodes = await make_nodes(dsn, tenant_id, args.swarm)
            # Each node's key looked up once, so the measure is not of key lookups.
            for node in [reader, *nodes]:
                target, headers = signed_get(node, "/v1/feed?limit=1")
                async with http.get(full_url(base, target), headers=headers) as resp:
                    await resp.read()
            one = await swarm_pull(http, base, hub.proc.pid, [reader], args.identity)
            many = await swarm_pull(http, base, hub.proc.pid, nodes, args.identity, args.py_spy)
    except Exception:
        failed = True
        print(f"hub log ({tmp / 'hub.log'}, kept), last lines:\n{hub.log_tail()}", file=sys.stderr)
        raise
    finally:
        hub.stop()
        if not failed:
            shutil.rmtree(tmp, ignore_errors=True)
    if one.count != 100_000:
        raise RuntimeError(f"the snapshot held {one.count} decisions, not 100,000")
    enc = "identity" if args.identity else "gzip admitted"
    print(
        f"snapshot of {one.count:,} (limit 5000, {enc}), hub: CPU s / peak workers' RSS MB / wall s"
    )
    print(f"  1 pull:   {one.cpu:6.2f} s  {one.rss_peak:6.0f} MB  {one.seconds:6.2f} s")
    print(
        f"  {args.swarm} pulls: {many.cpu:6.2f} s  {many.rss_peak:6.0f} MB  {many.seconds:6.2f} s"
    )
    print(
        f"  of that, in the kernel: 1 pull {one.kernel:.2f} s, {args.swarm} pulls"
        f" {many.kernel:.2f} s"
    )
    ratio = many.cpu / one.cpu
    peak = many.rss_peak
    return exit_status(
        report(
            [
                Target(
                    f"hub CPU of {args.swarm} pulls <= {SWARM_CPU_RATIO:.0f}x one pull alone",
                    f"{ratio:.2f}x ({many.cpu:.2f} s / {one.cpu:.2f} s)",
                    ratio <= SWARM_CPU_RATIO,
                ),
                Target(
                    f"peak hub workers' RSS, {args.swarm} pulls, {TARGETS['rss']}",
                    f"{peak:.0f} MB",
                    peak <= RSS_MB,
                ),
            ]
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="each poll phase's length")
    parser.add_argument("--waiters", type=int, default=2000, help="long-polling nodes")
    parser.add_argument("--snapshots", type=int, default=3, help="full snapshot pulls at each size")
    parser.add_argument(
        "--hub-nofile",
        type=int,
        default=0,
        help="the hub's soft fd limit (default: the hard limit, as the client)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="profile the workers (the fan-out, or with --swarm the N pulls) into DIR",
    )
    parser.add_argument(
        "--fanout-only", action="store_true", help="only the long-poll fan-out, on an empty feed"
    )
    parser.add_argument(
        "--swarm", type=int, default=0, help="N nodes pull one 100,000 snapshot at once"
    )
    parser.add_argument(
        "--identity", action="store_true", help="with --swarm: the client refuses gzip"
    )
    args = parser.parse_args(argv)
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    if args.swarm:
        return with_services(
            "bench.feed", lambda services: swarm(args, services.dsn, services.redis_url)
        )
    # 2,000 waiting connections on each side of loopback: raise the soft fd limit to
    # the hard one (the waiter process and, unless --hub-nofile, the hub inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(
        f"== feed: GET /v1/feed on `honeymesh-hub serve --workers 2`, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; PostgreSQL durable, Redis, clients on this "
        f"machine; fd limit {soft} -> {hard}, hub {args.hub_nofile or hard}",
        flush=True,
    )
    return with_services(
        "bench.feed", lambda services: bench(args, services.dsn, services.redis_url)
    )


if __name__ == "__main__":
    sys.exit(main())
