"""Time, injected: the app reads the clock it was given, so tests can move it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]


def system_clock() -> float:
    return time.time()


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def rfc3339(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z`, seconds precision (PROTOCOL.md: times are RFC 3339 UTC)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ManualClock:
    """A clock a test moves by hand; the only fake the suite uses besides network faults."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
