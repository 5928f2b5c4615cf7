"""Publish throughput, latency and hub CPU against a real `honeymesh-hub serve`.

PERFORMANCE.md sets the targets on a 2-core machine: at least 1,500 single-envelope
publishes/s with p99 <= 40 ms, at least 8,000 signals/s in batches, and hub CPU per
signal at most 1.5x a bare Ed25519 verify in batches and 5x in single-signal
requests. This measures exactly that, on loopback, with everything on this machine:

- throwaway PostgreSQL with full durability (fsync, synchronous_commit and
  full_page_writes on: `devservices.PostgresServer(fast=False)`, not the test
  suite's fsync=off cluster) and Redis, both from scripts/devservices.py;
- `honeymesh-hub serve --workers N` (default 2) as its own process group;
- an enterprise tenant whose limits are raised by PATCH so no rate limit refuses,
  and `--nodes` enrolled nodes;
- every request signed before its timed phase (own nonce, `created` now, its own
  signal ids), then sent by an aiohttp client in this process over keep-alive
  connections, reading nothing but the status;
- scenario "single": one envelope a request at `--concurrency`; scenario "batch":
  `--batch-size` envelopes a request at `--batch-concurrency`.

CPU is read from /proc/<pid>/stat (utime + stime) of the hub's whole process tree
(the parent and the resource tracker idle; the workers do the work), PostgreSQL's
tree, Redis and this client, and set beside the CPU of 1,000 bare `cryptography`
Ed25519 verifies measured in the same run. After each phase the `signals` table is
counted, so a 202 whose envelopes were refused cannot pass for throughput.

Indicators are drawn uniformly from `--indicators` public IPv4 addresses, so a run
both opens new candidates and folds signals into existing ones; one tenant, so no
corroboration query runs (that path needs two tenants).

    python -m bench.publish [--single-seconds 15] [--batch-seconds 15] [--workers 2]
                            [--py-spy single|batch]   # profile the hub's workers

A faster hub than the pre-signed pool allows (`--single-rate`, `--batch-rate`) ends
its phase early, and the table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yarl import URL

from bench.targets import Target, exit_status
from bench.targets import report as report_targets
from honeymesh_client.protocol.dsse import build_envelope
from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request

ROOT = Path(__file__).resolve().parent.parent
HUB_BIN = str(Path(sys.executable).with_name("honeymesh-hub"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

# PERFORMANCE.md / the issue.
TARGET_SINGLE_RPS = 1500.0
TARGET_SINGLE_P99_MS = 40.0
TARGET_BATCH_SIGNALS = 8000.0
TARGET_RATIO_BATCH = 1.5
TARGET_RATIO_SINGLE = 5.0

LIMITS = {  # high enough that no limit refuses during the run
    "publish_per_minute": 100_000_000,
    "tenant_publish_per_minute": 100_000_000,
    "new_candidates_per_day": 100_000_000,
    "max_batch": 500,
}


# --------------------------------------------------------------------------- CPU from /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
    return raw.rpartition(")")[2].split()


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and len(fields) > 1:
                parents[int(fields[1])].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """utime + stime of each pid, in seconds (pids that are gone are left out)."""
    out = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields and len(fields) > 12:
            out[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def system_seconds(pids: Sequence[int]) -> float:
    """stime of these pids, in seconds: the kernel's share of `cpu_seconds`."""
    fields = [_stat_fields(pid) for pid in pids]
    return sum(int(f[12]) for f in fields if f and len(f) > 12) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / CLK_TCK, idle / CLK_TCK


@dataclass
class CpuWatch:
    """CPU seconds of the hub, PostgreSQL, Redis and this client over one phase."""

    hub_root: int
    pg_root: int
    redis_pid: int
    started: dict[str, dict[int, float]] = field(default_factory=dict)
    client_started: float = 0.0
    machine_started: tuple[float, float] = (0.0, 0.0)

    def _sample(self) -> dict[str, dict[int, float]]:
        sample = {
            "hub": cpu_seconds(process_tree(self.hub_root)),
            "pg": cpu_seconds(process_tree(self.pg_root)),
            "redis": cpu_seconds([self.redis_pid]),
        }
        ours = {os.getpid()}.union(*sample.values())
        every = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
        sample["others"] = cpu_seconds([pid for pid in every if pid not in ours])
        return sample

    def start(self) -> None:
        self.started = self._sample()
        self.client_started = time.process_time()
        self.machine_started = machine_cpu()

    def stop(self) -> dict[str, Any]:
        ended = self._sample()
        client = time.process_time() - self.client_started
        busy, idle = machine_cpu()
        deltas: dict[str, Any] = {
            "client": client,
            "machine_busy": busy - self.machine_started[0],
            "machine_idle": idle - self.machine_started[1],
        }
        for name, now in ended.items():
            before = self.started[name]
            per_pid = {pid: t - before.get(pid, 0.0) for pid, t in now.items()}
            deltas[name] = sum(per_pid.values())
            if name == "hub":
                deltas["hub_per_pid"] = {p: t for p, t in per_pid.items() if t > 0.05}
        return deltas


def bare_verify_cpu(count: int = 3000, runs: int = 5) -> float:
    """CPU seconds of 1,000 bare Ed25519 verifies (`cryptography`, key loaded), median."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    message = b"x" * 200  # about the size of a signature base or a PAE
    sig = private.sign(message)
    per_1000 = []
    for _ in range(runs):
        started = time.process_time()
        for _ in range(count):
            public.verify(sig, message)
        per_1000.append((time.process_time() - started) / count * 1000)
    return statistics.median(per_1000)


# --------------------------------------------------------------------------- services, hub


def hub_env(dsn: str, redis_url: str, tmpdir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HONEYMESH_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        HONEYMESH_DATABASE_URL=dsn,
        HONEYMESH_REDIS_URL=redis_url,
        HONEYMESH_REDIS_PREFIX="bench:",
        # Enrollment allows 10 a minute per address: the set-up enrolls each node as if
        # from its own address, through loopback declared a trusted proxy.
        HONEYMESH_TRUSTED_PROXIES="127.0.0.1/32",
        TMPDIR=str(tmpdir),
        PYTHONUNBUFFERED="1",
    )
    # The one setting passed on: compare the event loops (cli.py) with the same bench.
    if "HONEYMESH_EVENT_LOOP" in os.environ:
        env["HONEYMESH_EVENT_LOOP"] = os.environ["HONEYMESH_EVENT_LOOP"]
    return env


def create_admin_token(env: dict[str, str]) -> str:
    done = subprocess.run(
        [HUB_BIN, "admin", "create-token", "--role", "admin", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"admin create-token failed: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class Hub:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def workers(self) -> list[int]:
        """The serving processes: the parent's children but multiprocessing's tracker."""
        return [
            pid
            for pid in process_tree(self.proc.pid)
            if pid != self.proc.pid and b"resource_tracker" not in _cmdline(pid)
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            if "redis unreachable" in self.log_path.read_text(errors="replace"):
                print(
                    "warning: the hub fell back from Redis during this run (its log says"
                    " 'redis unreachable'): these figures are of its degraded mode",
                    file=sys.stderr,
                )


def start_hub(env: dict[str, str], port: int, workers: int, log_path: Path) -> Hub:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [HUB_BIN, "serve", "--listen", f"127.0.0.1:{port}", "--workers", str(workers)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Hub(proc, port, log_path)


async def wait_ready(hub: Hub, http: aiohttp.ClientSession, workers: int) -> None:
    """/readyz answers 200 and every worker process exists (set-up, not a measurement)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if hub.proc.poll() is not None:
            raise RuntimeError(f"the hub exited with {hub.proc.returncode}:\n{hub.log_tail()}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(f"{hub.base}/readyz") as resp:
                if resp.status == 200 and len(hub.workers()) >= workers:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the hub was not ready within {READY_TIMEOUT:.0f} s:\n{hub.log_tail()}")


# --------------------------------------------------------------------------- set-up over HTTP


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, json=body, headers=headers) as resp:
        payload: dict[str, Any] = await resp.json(content_type=None)
        if resp.status >= 300:
            raise RuntimeError(f"{method} {url} answered {resp.status}: {payload}")
        return payload


@dataclass(frozen=True, slots=True)
class BenchNode:
    key: NodeKey
    node_id: str


async def enroll_nodes(
    http: aiohttp.ClientSession, base: str, token: str, count: int
) -> list[BenchNode]:
    """An enterprise tenant, its limits raised by PATCH, and `count` enrolled nodes."""
    tenant = await _call(
        http, "POST", f"{base}/v1/admin/tenants", token, {"name": "bench", "plan": "enterprise"}
    )
    tenant_id = tenant["tenant_id"]
    await _call(http, "PATCH", f"{base}/v1/admin/tenants/{tenant_id}", token, {"limits": LIMITS})
    made = await _call(
        http,
        "POST",
        f"{base}/v1/admin/tenants/{tenant_id}/enrollment-tokens",
        token,
        {"ttl_seconds": 3600, "max_uses": count},
    )
    nodes = []
    for i in range(count):
        key = NodeKey.generate()
        body = json.dumps(
            {"token": made["token"], "public_key": key.public_b64, "name": f"bench-{i}"}
        ).encode()
        headers = sign_request(key, "POST", "/v1/nodes/enroll", "", body)
        headers["Content-Type"] = "application/json"
        headers["X-Forwarded-For"] = f"198.51.100.{i % 250 + 1}"
        async with http.post(
            URL(f"{base}/v1/nodes/enroll", encoded=True), data=body, headers=headers
        ) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != 201:
                raise RuntimeError(f"enrollment answered {resp.status}: {answer}")
        nodes.append(BenchNode(key, answer["node_id"]))
    return nodes


# --------------------------------------------------------------------------- pre-signed requests


@dataclass(frozen=True, slots=True)
class Prepared:
    """One signed POST /v1/signals, ready to send as is."""

    headers: dict[str, str]
    body: bytes
    signals: int


def indicator_pool(count: int, seed: int = 20261124) -> list[str]:
    """Distinct public IPv4 addresses in 45.0.0.0/8 and 185.0.0.0/8 (never reserved)."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < count:
        first = rng.choice((45, 185))
        found.add(f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    return sorted(found)


def _payload(node: BenchNode, value: str, observed: str) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "id": str(uuid.uuid4()),
            "node_id": node.node_id,
            "observed_at": observed,
            "indicator": {"type": "ip", "value": value},
            "scenario": "ssh/brute-force",
            "action": "blocked",
            "mode": "enforce",
            "confidence": 80,
            "ttl_seconds": 3600,
            "share": "mesh",
        },
        separators=(",", ":"),
    ).encode()


def presign(
    nodes: Sequence[BenchNode], indicators: Sequence[str], requests: int, per_request: int
) -> list[Prepared]:
    """`requests` publishes of `per_request` new signals each, round-robin over nodes."""
    rng = random.Random()
    now = int(time.time())
    observed = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pool = []
    for i in range(requests):
        node = nodes[i % len(nodes)]
        envelopes = [
            build_envelope(node.key, _payload(node, rng.choice(indicators), observed))
            for _ in range(per_request)
        ]
        body = json.dumps({"envelopes": envelopes}, separators=(",", ":")).encode()
        headers = sign_request(node.key, "POST", "/v1/signals", "", body, created=now)
        headers["Content-Type"] = "application/json"
        pool.append(Prepared(headers, body, per_request))
    return pool


# --------------------------------------------------------------------------- load


@dataclass
class Drive:
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    signals_ok: int = 0
    elapsed: float = 0.0
    exhausted: bool = False


async def drive(
    http: aiohttp.ClientSession,
    url: URL,
    pool: Iterator[Prepared],
    concurrency: int,
    seconds: float,
) -> Drive:
    """Send from `pool` with `concurrency` requests in flight until `seconds` pass."""
    result = Drive()
    started = time.perf_counter()
    deadline = started + seconds
    clock = time.perf_counter

    async def worker() -> None:
        for req in pool:  # one shared iterator: each request is sent once
            t0 = clock()
            async with http.post(url, data=req.body, headers=req.headers) as resp:
                await resp.read()
                status = resp.status
            t1 = clock()
            result.latencies.append(t1 - t0)
            result.statuses[status] += 1
            if status == 202:
                result.signals_ok += req.signals
            if t1 >= deadline:
                return
        result.exhausted = True

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


async def probe(http: aiohttp.ClientSession, url: URL, req: Prepared) -> None:
    """One request, its results read: every envelope must be `accepted`."""
    async with http.post(url, data=req.body, headers=req.headers) as resp:
        answer = await resp.json(content_type=None)
        statuses = {r.get("status") for r in answer.get("results", [])}
        if resp.status != 202 or statuses != {"accepted"}:
            raise RuntimeError(f"a probe publish answered {resp.status}: {str(answer)[:600]}")


async def count_signals(dsn: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM signals"))
    finally:
        await conn.close()


# --------------------------------------------------------------------------- profiling


def start_py_spy(
    pids: Sequence[int], seconds: float, outdir: Path, rate: int = 100, gil: bool = False
) -> list[subprocess.Popen[bytes]]:
    """py-spy on each pid. `gil`: sample only the thread holding the GIL, so a worker
    that is runnable but not running (preempted in a socket write, say) is not counted
    as busy: on two shared cores, wall-clock samples overstate such waits."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("py-spy is not installed (pip install py-spy); no profile taken.")
        return []
    procs = []
    for pid in pids:
        procs.append(
            subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(max(1, int(seconds))),
                    "--rate",
                    str(rate),
                    "--format",
                    "raw",
                    "--output",
                    str(outdir / f"worker-{pid}.txt"),
                    *(["--gil"] if gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def summarize_profile(outdir: Path, top: int = 18) -> str:
    """Self and inclusive shares per function, over every worker's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for path in outdir.glob("worker-*.txt"):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            count = int(n)
            frames = [f.split(" (")[0] + _where(f) for f in stack.split(";")]
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                incl[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples of busy threads, files in {outdir}", "self:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


def _where(frame: str) -> str:
    """` (module.py)` from py-spy's `func (path/module.py:line)`."""
    if " (" not in frame:
        return ""
    path = frame.split(" (", 1)[1].rstrip(")").rsplit(":", 1)[0]
    return f" ({Path(path).name})"


# --------------------------------------------------------------------------- phases


@dataclass
class Phase:
    name: str
    concurrency: int
    drive: Drive
    cpu: dict[str, Any]
    stored: int

    @property
    def rps(self) -> float:
        return sum(self.drive.statuses.values()) / self.drive.elapsed

    @property
    def sps(self) -> float:
        return self.drive.signals_ok / self.drive.elapsed

    def pct(self, q: float) -> float:
        lat = sorted(self.drive.latencies)
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    def per_1k(self, who: str) -> float:
        return float(self.cpu[who]) / max(1, self.drive.signals_ok) * 1000


@dataclass
class Settings:
    workers: int
    nodes: int
    concurrency: int
    batch_concurrency: int
    batch_size: int
    single_seconds: float
    batch_seconds: float
    single_rate: float
    batch_rate: float
    indicators: int
    py_spy: str | None


async def run_phase(
    name: str,
    http: aiohttp.ClientSession,
    hub: Hub,
    watch: CpuWatch,
    dsn: str,
    pool: list[Prepared],
    concurrency: int,
    seconds: float,
    warmup: int,
    py_spy: bool,
) -> Phase:
    url = URL(f"{hub.base}/v1/signals", encoded=True)
    await probe(http, url, pool[0])
    warm = await drive(http, url, iter(pool[1 : warmup + 1]), concurrency, 60.0)
    if set(warm.statuses) != {202}:
        raise RuntimeError(f"warm-up answered {dict(warm.statuses)}:\n{hub.log_tail()}")
    before = await count_signals(dsn)
    spies: list[subprocess.Popen[bytes]] = []
    spy_dir = None
    if py_spy:
        spy_dir = Path(tempfile.mkdtemp(prefix=f"bench-publish-{name}-"))
        spies = start_py_spy(hub.workers(), seconds, spy_dir, gil=True)
    watch.start()
    result = await drive(http, url, iter(pool[warmup + 1 :]), concurrency, seconds)
    cpu = watch.stop()
    for spy in spies:
        spy.wait(timeout=60)
    stored = await count_signals(dsn) - before
    phase = Phase(name, concurrency, result, cpu, stored)
    if spy_dir is not None and spies:
        print(f"\npy-spy, hub workers during '{name}':\n{summarize_profile(spy_dir)}\n")
    return phase


async def bench(settings: Settings, dsn: str, redis_url: str, pg_pid: int, redis_pid: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    env = hub_env(dsn, redis_url, tmp)
    token = create_admin_token(env)  # migrates too
    import devservices

    hub = start_hub(env, devservices.free_port(), settings.workers, tmp / "hub.log")
    try:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
        ) as http:
            await wait_ready(hub, http, settings.workers)
            nodes = await enroll_nodes(http, hub.base, token, settings.nodes)
            indicators = indicator_pool(settings.indicators)
            bare = bare_verify_cpu()
            watch = CpuWatch(hub.proc.pid, pg_pid, redis_pid)
            phases = []

            started = time.monotonic()
            single_warm = 500
            n = int(settings.single_rate * settings.single_seconds) + single_warm + 1
            pool = presign(nodes, indicators, n, 1)
            print(f"signed {n} single publishes in {time.monotonic() - started:.1f} s", flush=True)
            phases.append(
                await run_phase(
                    "single",
                    http,
                    hub,
                    watch,
                    dsn,
                    pool,
                    settings.concurrency,
                    settings.single_seconds,
                    single_warm,
                    settings.py_spy == "single",
                )
            )
            del pool

            started = time.monotonic()
            batch_warm = 2 * settings.batch_concurrency
            n = int(settings.batch_rate * settings.batch_seconds / settings.batch_size)
            n += batch_warm + 1
            pool = presign(nodes, indicators, n, settings.batch_size)
            print(
                f"signed {n} batches of {settings.batch_size} in "
                f"{time.monotonic() - started:.1f} s",
                flush=True,
            )
            phases.append(
                await run_phase(
                    f"batch x{settings.batch_size}",
                    http,
                    hub,
                    watch,
                    dsn,
                    pool,
                    settings.batch_concurrency,
                    settings.batch_seconds,
                    batch_warm,
                    settings.py_spy == "batch",
                )
            )
            del pool
            bare = min(bare, bare_verify_cpu())  # the quieter of two readings
    finally:
        hub.stop()
    met = report(settings, phases, bare)
    shutil.rmtree(tmp, ignore_errors=True)
    return exit_status(met)


# --------------------------------------------------------------------------- report


def report(settings: Settings, phases: list[Phase], bare: float) -> bool:
    head = (
        f"{'scenario':<11} {'conc':>4} {'secs':>5} {'req/s':>8} {'signals/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'hub CPU s/1k':>12} {'x verify':>8} {'not 202':>7}"
    )
    print()
    print(head)
    print("-" * len(head))
    for p in phases:
        bad = sum(n for s, n in p.drive.statuses.items() if s != 202)
        secs = f"{p.drive.elapsed:.1f}" + ("*" if p.drive.exhausted else "")
        print(
            f"{p.name:<11} {p.concurrency:>4} {secs:>5} {p.rps:>8.0f} {p.sps:>9.0f} "
            f"{p.pct(0.50):>7.1f} {p.pct(0.99):>7.1f} {p.per_1k('hub'):>12.3f} "
            f"{p.per_1k('hub') / bare:>7.2f}x {bad:>7}"
        )
    print(f"bare Ed25519 verify: {bare:.3f} CPU s per 1,000 (cryptography, same run)")
    for p in phases:
        split = sorted(p.cpu["hub_per_pid"].values(), reverse=True)
        total = sum(split) or 1.0
        print(
            f"{p.name}: CPU s per 1k signals: PostgreSQL {p.per_1k('pg'):.3f}, "
            f"Redis {p.per_1k('redis'):.3f}, client {p.per_1k('client'):.3f}; "
            f"hub processes {' / '.join(f'{t / total:.0%}' for t in split)}; "
            f"rows stored {p.stored} of {p.drive.signals_ok} acknowledged"
        )
        ours = sum(float(p.cpu[k]) for k in ("hub", "pg", "redis", "client", "others"))
        busy, idle = float(p.cpu["machine_busy"]), float(p.cpu["machine_idle"])
        print(
            f"{p.name}: machine {busy / (busy + idle):.0%} busy; other processes on the "
            f"machine {float(p.cpu['others']) / p.drive.elapsed:.2f} cores, unattributed "
            f"(kernel, short-lived processes) {max(0.0, busy - ours) / p.drive.elapsed:.2f} cores"
        )
        if p.drive.exhausted:
            print(f"* {p.name}: the pre-signed pool ran out first; raise --*-rate")
    for p in phases:
        if p.stored != p.drive.signals_ok:
            print(f"WARNING {p.name}: {p.drive.signals_ok} acknowledged but {p.stored} stored")
    single, batch = phases
    batch_ratio = batch.per_1k("hub") / bare
    single_ratio = single.per_1k("hub") / bare
    return report_targets(
        [
            Target(
                f"single >= {TARGET_SINGLE_RPS:.0f} req/s",
                f"{single.rps:,.0f} req/s",
                single.rps >= TARGET_SINGLE_RPS,
            ),
            Target(
                f"single p99 <= {TARGET_SINGLE_P99_MS:.0f} ms",
                f"{single.pct(0.99):.1f} ms",
                single.pct(0.99) <= TARGET_SINGLE_P99_MS,
            ),
            Target(
                f"batch >= {TARGET_BATCH_SIGNALS:.0f} signals/s",
                f"{batch.sps:,.0f} signals/s",
                batch.sps >= TARGET_BATCH_SIGNALS,
            ),
            Target(
                f"batch CPU <= {TARGET_RATIO_BATCH}x verify",
                f"{batch_ratio:.2f}x",
                batch_ratio <= TARGET_RATIO_BATCH,
            ),
            Target(
                f"single CPU <= {TARGET_RATIO_SINGLE:.0f}x verify",
                f"{single_ratio:.2f}x",
                single_ratio <= TARGET_RATIO_SINGLE,
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.publish", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--workers", type=int, default=2, help="serve --workers (default 2)")
    parser.add_argument("--nodes", type=int, default=32, help="enrolled nodes (default 32)")
    parser.add_argument("--concurrency", type=int, default=32, help="single: in flight")
    parser.add_argument("--batch-concurrency", type=int, default=8, help="batch: in flight")
    parser.add_argument("--batch-size", type=int, default=100, help="envelopes per batch")
    parser.add_argument("--single-seconds", type=float, default=15.0)
    parser.add_argument("--batch-seconds", type=float, default=15.0)
    parser.add_argument(
        "--single-rate", type=float, default=2500.0, help="pre-signed pool: requests/s at most"
    )
    parser.add_argument(
        "--batch-rate", type=float, default=12000.0, help="pre-signed pool: signals/s at most"
    )
    parser.add_argument("--indicators", type=int, default=20000, help="distinct addresses")
    parser.add_argument(
        "--py-spy", choices=("single", "batch"), help="profile the hub workers in that phase"
    )
    args = parser.parse_args(argv)
    settings = Settings(**{k.replace("-", "_"): v for k, v in vars(args).items()})

    print(
        f"== publish: POST /v1/signals on `honeymesh-hub serve --workers {settings.workers}`, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; PostgreSQL durable "
        f"(fsync on), Redis, client, all on this machine",
        flush=True,
    )

    async def measure(services: BenchServices) -> int:
        return await bench(
            settings, services.dsn, services.redis_url, services.pg_pid, services.redis_pid
        )

    return with_services("bench.publish", measure)


@dataclass(frozen=True, slots=True)
class BenchServices:
    dsn: str
    redis_url: str
    pg_pid: int
    redis_pid: int


def with_services(name: str, measure: Callable[[BenchServices], Awaitable[int]]) -> int:
    """Run `measure` on a durable throwaway PostgreSQL (fsync on) and a Redis, both
    stopped afterwards whatever happens; a set-up failure is one line on stderr."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import devservices

    pg = redis = None
    try:
        pg = devservices.PostgresServer(fast=False)
        pg.start()
        redis = devservices.RedisServer()
        redis.start()
        services = BenchServices(
            pg.ensure_database("bench"),
            redis.url,
            int((pg.datadir / "postmaster.pid").read_text().split()[0]),
            int(redis.pidfile.read_text().strip()),
        )
        return asyncio.run(measure(services))
    except (devservices.DevServiceError, RuntimeError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    finally:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
