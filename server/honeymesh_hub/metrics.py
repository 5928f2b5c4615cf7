"""Prometheus series of the hub (PROTOCOL.md section 10).

One registry per app. Under `serve --workers N` the CLI sets PROMETHEUS_MULTIPROC_DIR
before any worker starts, so every process writes its samples there and /metrics
aggregates all of them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _sized(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


def merge_files(paths: Iterable[str]) -> Iterable[Metric]:
    """The samples of the given multiprocess files, summed across processes.

    A process creates its file empty and sizes it a moment later (prometheus_client's
    MmapedDict), so a scrape that globs the directory in between would read zero bytes
    and fail: a 500 on /metrics while a worker starts. Such a file holds no sample yet,
    and a file only ever grows, so leaving out the empty ones loses nothing.
    """
    return MultiProcessCollector.merge([p for p in paths if _sized(p)], accumulate=True)  # type: ignore[no-untyped-call,no-any-return]


class _SizedFilesCollector:
    """MultiProcessCollector's collect(), over the files that are ready to read."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        return merge_files(glob.glob(os.path.join(self._directory, "*.db")))


@dataclass(slots=True)
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    requests: Counter = field(init=False)
    latency: Histogram = field(init=False)
    signals: Counter = field(init=False)
    publish_latency: Histogram = field(init=False)
    rate_limited: Counter = field(init=False)
    redis_degraded: Gauge = field(init=False)
    redis_fallbacks: Counter = field(init=False)
    feed_waiters: Gauge = field(init=False)
    feed_events: Counter = field(init=False)
    feed_served: dict[str, Any] = field(init=False)
    auto_decisions: Counter = field(init=False)
    candidates: Gauge = field(init=False)
    sweeper_lag: Gauge = field(init=False)
    reader_polls: Counter = field(init=False)
    reader_decisions: Counter = field(init=False)
    reader_usage_dropped: Counter = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "honeymesh_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "honeymesh_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.signals = Counter(
            "honeymesh_signals",
            "Signals by outcome (accepted, duplicate, refusal code)",
            ["outcome"],
            registry=r,
        )
        self.publish_latency = Histogram(
            "honeymesh_publish_seconds",
            "Publish request latency",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "honeymesh_rate_limited", "Requests refused by a rate limit", ["policy"], registry=r
        )
        self.redis_degraded = Gauge(
            "honeymesh_redis_degraded",
            "1 while Redis is unreachable and limits are per process",
            registry=r,
            multiprocess_mode="max",
        )
        self.redis_fallbacks = Counter(
            "honeymesh_redis_fallbacks",
            "Operations served without Redis",
            ["operation"],
            registry=r,
        )
        self.feed_waiters = Gauge(
            "honeymesh_feed_waiters",
            "Feed requests waiting for news",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.feed_events = Counter(
            "honeymesh_feed_events", "Feed entries served", ["kind"], registry=r
        )
        # Bound once: `labels()` costs more than the increment on the feed's hot path.
        self.feed_served = {k: self.feed_events.labels(k) for k in ("added", "removed", "snapshot")}
        self.auto_decisions = Counter(
            "honeymesh_auto_decisions",
            "Automatic decisions and deferrals by rule",
            ["rule"],
            registry=r,
        )
        self.candidates = Gauge(
            "honeymesh_candidates",
            "Candidates by state (sampled)",
            ["state"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.sweeper_lag = Gauge(
            "honeymesh_expiry_sweeper_lag_seconds",
            "Age of the oldest overdue expiry",
            registry=r,
            multiprocess_mode="max",
        )

        # Per surface, never per key (unbounded): per-key figures are in the admin API.
        self.reader_polls = Counter(
            "honeymesh_reader_polls",
            "Answers served to reader keys by surface",
            ["surface"],
            registry=r,
        )
        self.reader_decisions = Counter(
            "honeymesh_reader_decisions_served",
            "Decisions in answers to reader keys by surface",
            ["surface"],
            registry=r,
        )
        self.reader_usage_dropped = Counter(
            "honeymesh_reader_usage_dropped",
            "Reader key usage records dropped while the per-process table was full",
            registry=r,
        )

    def render(self) -> bytes:
        if _multiprocess():
            registry = CollectorRegistry()
            registry.register(_SizedFilesCollector(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
            return generate_latest(registry)
        return generate_latest(self.registry)
