"""`honeymesh-hub serve`: workers on one port, metrics of all of them, clean stops
(PROTOCOL.md sections 10 and 11)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Iterable

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from honeymesh_hub.metrics import merge_files

from .conftest import HubFactory
from .remote import HubProcess, children_of, cmdline, group_alive, send, wait_until

REQUESTS = 60
STOP_SECONDS = 10.0  # PROTOCOL.md section 11: exits 0 within 10 s


def hub_requests(families: Iterable[Metric], route: str, status: str = "200") -> float:
    """The sum of `honeymesh_http_requests_total{route, status}` samples."""
    total = 0.0
    for family in families:
        for sample in family.samples:
            if (
                sample.name == "honeymesh_http_requests_total"
                and sample.labels.get("route") == route
                and sample.labels.get("status") == status
            ):
                total += sample.value
    return total


def workers_of(hub: HubProcess) -> list[int]:
    return [pid for pid in children_of(hub.pid) if "spawn_main" in cmdline(pid)]


def served_by_worker(hub: HubProcess, route: str) -> dict[int, float]:
    """Each worker's own count for `route`, read from its multiprocess metrics file."""
    counts: dict[int, float] = {}
    for path in hub.tmpdir.glob("honeymesh-metrics-*/counter_*.db"):
        match = re.fullmatch(r"counter_(\d+)\.db", path.name)
        assert match, path
        families = merge_files([str(path)])
        counts[int(match.group(1))] = hub_requests(families, route)
    return counts


async def test_two_workers_share_one_port_and_metrics_cover_both(
    hub_process_factory: HubFactory, session: aiohttp.ClientSession
) -> None:
    hub = hub_process_factory(workers=2)
    workers = workers_of(hub)
    assert len(workers) == 2, [cmdline(p) for p in children_of(hub.pid)]
    # Set-up: /readyz answered once, but the other worker may still be starting.
    # Knock on /readyz until each worker's own metrics file shows it answered.
    deadline = time.monotonic() + 30
    while not all(served_by_worker(hub, "/readyz").get(pid) for pid in workers):
        assert time.monotonic() < deadline, served_by_worker(hub, "/readyz")
        await send(session, "GET", f"{hub.base_url}/readyz")

    # One connection per request (the session forces close), so the kernel spreads
    # them over both listening workers.
    replies = await asyncio.gather(
        *(send(session, "GET", f"{hub.base_url}/v1/hub") for _ in range(REQUESTS))
    )
    assert [r.status for r in replies] == [200] * REQUESTS
    assert all(r.body["api"] == "v1" for r in replies)

    per_worker = served_by_worker(hub, "/v1/hub")
    assert set(per_worker) >= set(workers), (per_worker, workers)
    assert all(per_worker[pid] > 0 for pid in workers), per_worker

    metrics = await send(session, "GET", f"{hub.base_url}/metrics")
    assert metrics.status == 200
    families = list(text_string_to_metric_families(metrics.raw.decode()))
    assert hub_requests(families, "/v1/hub") == REQUESTS


def _serves(hub: HubProcess) -> bool:
    with urllib.request.urlopen(f"{hub.base_url}/v1/hub", timeout=5) as resp:  # noqa: S310
        return resp.status == 200 and bool(json.loads(resp.read())["api"] == "v1")


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _all_workers_ready(hub: HubProcess) -> None:
    """Set-up: every worker has answered /readyz (one answer proves only one worker)."""
    workers = workers_of(hub) if hub.workers > 1 else [hub.pid]
    assert len(workers) == hub.workers
    if hub.workers == 1:
        return
    deadline = time.monotonic() + 30
    while not all(served_by_worker(hub, "/readyz").get(pid) for pid in workers):
        assert time.monotonic() < deadline, served_by_worker(hub, "/readyz")
        hub.wait_ready()


STOPS = [
    pytest.param(signal.SIGTERM, False, id="SIGTERM"),
    pytest.param(signal.SIGINT, False, id="SIGINT"),
    # Ctrl-C in a terminal: SIGINT to the whole foreground group, workers included.
    pytest.param(signal.SIGINT, True, id="SIGINT-group"),
]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("signum", "to_group"), STOPS)
def test_signal_stops_the_hub_with_status_0(
    hub_process_factory: HubFactory, signum: int, to_group: bool, workers: int
) -> None:
    hub = hub_process_factory(workers=workers)
    _all_workers_ready(hub)
    assert _serves(hub)

    started = time.monotonic()
    if to_group:
        os.killpg(hub.pid, signum)
    else:
        hub.signal(signum)
    status = hub.wait_exit(STOP_SECONDS)
    elapsed = time.monotonic() - started
    assert status == 0, f"status {status} after {elapsed:.1f} s:\n{hub.output()}"
    assert "Traceback" not in hub.output()

    # Nothing of the hub is left: workers and helpers exit with (or just after) it.
    gone = wait_until(lambda: not group_alive(hub.pid), timeout=5)
    assert gone, "processes of the hub's group outlived it"
    assert _port_closed(hub.port)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_workers_start_stops_the_hub_with_status_0(
    hub_process_factory: HubFactory, signum: int
) -> None:
    """A stop that arrives while the workers are still importing is a clean stop too."""
    hub = hub_process_factory(workers=2, ready=False)
    started = wait_until(lambda: len(workers_of(hub)) == 2, timeout=30, interval=0.005)
    assert started, hub.output()
    hub.signal(signum)
    status = hub.wait_exit(STOP_SECONDS)
    assert status == 0, f"status {status}:\n{hub.output()}"
    assert "Traceback" not in hub.output()
    assert wait_until(lambda: not group_alive(hub.pid), timeout=5)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_either_event_loop_serves_and_stops_with_status_0(
    hub_process_factory: HubFactory, hub_env_vars: dict[str, str], loop: str
) -> None:
    """Workers run uvloop's loop unless HONEYMESH_EVENT_LOOP=asyncio (cli.py)."""
    hub = hub_process_factory(workers=2, env={**hub_env_vars, "HONEYMESH_EVENT_LOOP": loop})
    _all_workers_ready(hub)
    assert _serves(hub)
    hub.signal(signal.SIGTERM)
    status = hub.wait_exit(STOP_SECONDS)
    assert status == 0, f"status {status}:\n{hub.output()}"
    assert "Traceback" not in hub.output()


def test_an_unknown_event_loop_stops_the_hub_before_any_worker_starts(
    hub_process_factory: HubFactory, hub_env_vars: dict[str, str]
) -> None:
    hub = hub_process_factory(
        workers=2, env={**hub_env_vars, "HONEYMESH_EVENT_LOOP": "tokio"}, ready=False
    )
    assert hub.wait_exit(STOP_SECONDS) == 2
    assert "HONEYMESH_EVENT_LOOP must be uvloop or asyncio" in hub.output()
    assert not workers_of(hub)
