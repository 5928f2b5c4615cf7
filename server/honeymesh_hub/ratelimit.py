"""Rate limits on `limits` (PROTOCOL.md section 9), shared across replicas via Redis.

Windows are sliding (`SlidingWindowCounterRateLimiter`: two counters a key, atomic in
`limits`' own Lua). When Redis fails, the same limits are counted per process in
memory, and `RedisGate` reports `degraded`. Answers carry the IETF RateLimit fields.

The hot paths (publish, feed, every signed request) go through `admit`: all of a
request's limits in ONE Redis round trip (PERFORMANCE.md: a redis-py call costs about as
much as two signature checks). `limits` has no multi-limit acquire, so `lua/admit.lua`
applies limits' own sliding-window-counter algorithm to several windows at once, on
limits' key layout, so `limits`' API reads the very same counters: all windows are tested
before any is charged. tests/integration/test_admit_contract.py holds the script to
`limits` itself (hence the pin on limits' major version in pyproject.toml).

The verbs: `admit` (all or nothing, several windows; cost 0 reads), `take` (up to n
units of one window), `used` (what a window has spent), and `defer`/`deferred`/`flush`
(charges collected now, made within the second).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from .errors import RateLimited
from .pipelined import Script
from .redisconn import RedisGate

T = TypeVar("T")


def per_minute(n: int) -> RateLimitItem:
    return RateLimitItemPerMinute(n)


def per_day(n: int) -> RateLimitItem:
    return RateLimitItemPerDay(n)


@dataclass(frozen=True, slots=True)
class Limit:
    """One counter: an amount per window, for one key (node id, tenant id, address)."""

    item: RateLimitItem
    key: str


@dataclass(frozen=True, slots=True)
class Quota:
    """What is left of the tightest limit after a request, for the RateLimit fields."""

    policy: str
    quota: int
    window: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        h = {
            "RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset}',
        }
        if self.remaining <= 0:
            h["Retry-After"] = str(max(1, self.reset))
        return h


_ADMIT = Script(
    (resources.files("honeymesh_hub") / "lua" / "admit.lua").read_text(encoding="utf-8")
)


@dataclass(frozen=True, slots=True)
class Window:
    """A limit's window after an admission: what is left, and when a unit frees."""

    limit: Limit
    remaining: int
    reset: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of `admit`: whether it charged, and every window's state after."""

    allowed: bool
    windows: tuple[Window, ...]
    # Index (into the charges) of the window that refused, as the deciding code saw it.
    refused: int | None = None


def _window(limit: Limit, pc: int, pt_ms: int, cc: int, ct_ms: int) -> Window:
    """limits' SlidingWindowCounterRateLimiter.get_window_stats, on the script's reading."""
    expiry = limit.item.get_expiry()
    # Integer arithmetic, as exact as the script's test (floats round differently).
    weighted = pc * pt_ms // (int(expiry) * 1000) + cc
    remaining = max(0, limit.item.amount - weighted)
    reset = 0.0
    if pc or cc:
        reset = math.inf
        if pc:
            reset = (pt_ms / 1000) % (expiry / pc)
        if cc:
            reset = min(reset, (ct_ms / 1000) % expiry)
    return Window(limit, remaining, math.ceil(reset))


def refusal(spent: Quota) -> RateLimited:
    """The 429 for a spent policy: nothing remaining, retry in at least a second."""
    quota = Quota(spent.policy, spent.quota, spent.window, 0, max(1, spent.reset))
    return RateLimited(
        f"Rate limit {quota.policy!r} reached; retry in {quota.reset} s.",
        headers=quota.headers(),
    )


def quota_of(policy: str, windows: Sequence[Window]) -> Quota:
    """The tightest of a policy's windows, as the RateLimit fields show it."""
    tightest = min(windows, key=lambda w: w.remaining)
    item = tightest.limit.item
    return Quota(policy, item.amount, int(item.get_expiry()), tightest.remaining, tightest.reset)


class RateLimiter:
    def __init__(self, gate: RedisGate) -> None:
        self._gate = gate
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared = (
            SlidingWindowCounterRateLimiter(
                RedisStorage(
                    gate.url,
                    implementation="redispy",
                    wrap_exceptions=True,
                    key_prefix=gate.prefix + "rl",
                    # The gate's bounded pool: one per process for every Redis use.
                    connection_pool=gate.pool,  # type: ignore[arg-type]  # documented; typed as **options
                )
            )
            if gate.url is not None and gate.pool is not None
            else None
        )
        self._deferred: dict[tuple[str, Limit], int] = {}

    def _window_keys(self, policy: str, limit: Limit) -> tuple[str, str]:
        """limits' RedisStorage key layout for a sliding window (previous, current)."""
        current = f"{self._gate.prefix}rl:{{{limit.item.key_for(policy, limit.key)}}}"
        return current + "/-1", current

    async def admit(self, charges: Sequence[tuple[str, Limit, int]]) -> Admission:
        """Charge `(policy, limit, cost)` windows, all or nothing; cost 0 only reads one.

        One Redis round trip, so replicas racing for the last unit never both get it;
        while Redis is unreachable, counted in this process instead.
        """
        admission = await self._admit_shared(charges)
        if admission is None:
            admission = await self._admit_in_memory(charges)
        return admission

    async def _admit_shared(self, charges: Sequence[tuple[str, Limit, int]]) -> Admission | None:
        """`admit` in Redis (lua/admit.lua); None when Redis cannot be used."""
        if not self._gate.usable:
            return None
        keys: list[str] = []
        args: list[int] = []
        for policy, limit, cost in charges:
            keys.extend(self._window_keys(policy, limit))
            args.extend((limit.item.amount, int(limit.item.get_expiry()), cost))
        try:
            out = await self._gate.script(_ADMIT, keys, args)
        except (RedisError, OSError) as exc:
            self._gate.failed("admit", exc)
            return None
        self._gate.succeeded()
        windows = tuple(
            _window(limit, *(int(v) for v in out[2 + 4 * i : 6 + 4 * i]))
            for i, (_, limit, _) in enumerate(charges)
        )
        refused = int(out[1]) - 1 if not out[0] else None
        return Admission(bool(out[0]), windows, refused)

    async def _admit_in_memory(self, charges: Sequence[tuple[str, Limit, int]]) -> Admission:
        """`admit`'s limits, counted in this process while Redis is unreachable."""
        limiter = self._memory
        before = [await limiter.get_window_stats(lim.item, p, lim.key) for p, lim, _ in charges]
        refused = next(
            (
                i
                for i, ((_, lim, cost), stats) in enumerate(zip(charges, before, strict=True))
                if cost > 0 and (cost > lim.item.amount or stats.remaining < cost)
            ),
            None,
        )
        allowed = refused is None
        if allowed:
            for policy, limit, cost in charges:
                if cost > 0:
                    await limiter.hit(limit.item, policy, limit.key, cost=cost)
        windows = []
        for policy, limit, _ in charges:
            stats = await limiter.get_window_stats(limit.item, policy, limit.key)
            windows.append(_quota_window(limit, stats.remaining, stats.reset_time))
        return Admission(allowed, tuple(windows), refused)

    async def _run(self, op: Callable[[SlidingWindowCounterRateLimiter], Awaitable[T]]) -> T:
        """Run `op` on the shared (Redis) limiter, or per process while Redis is down."""
        if self._shared is not None and self._gate.usable:
            try:
                result = await op(self._shared)
            except (StorageError, RedisError, OSError) as exc:
                self._gate.failed("ratelimit", exc)
            else:
                self._gate.succeeded()
                return result
        return await op(self._memory)

    def defer(self, policy: str, limit: Limit, cost: int) -> None:
        """Charge `cost` later, with the next `flush` (at most a second away)."""
        key = (policy, limit)
        self._deferred[key] = self._deferred.get(key, 0) + cost

    def deferred(self, policy: str, limit: Limit) -> int:
        """What `defer` has collected for the limit and `flush` has not charged yet."""
        return self._deferred.get((policy, limit), 0)

    async def flush(self) -> None:
        """Charge what `defer` collected (what fits: the window only refuses later ones)."""
        pending, self._deferred = self._deferred, {}
        for (policy, limit), cost in pending.items():
            await self.take(policy, limit, cost)

    async def used(self, policy: str, limit: Limit) -> int:
        """How much of the limit's window is spent now; charges nothing."""

        async def op(limiter: SlidingWindowCounterRateLimiter) -> int:
            stats = await limiter.get_window_stats(limit.item, policy, limit.key)
            return max(0, limit.item.amount - stats.remaining)

        return await self._run(op)

    async def take(self, policy: str, limit: Limit, wanted: int) -> int:
        """Charge up to `wanted` units; return how many the limit granted."""

        async def op(limiter: SlidingWindowCounterRateLimiter) -> int:
            stats = await limiter.get_window_stats(limit.item, policy, limit.key)
            granted = max(0, min(wanted, stats.remaining))
            if granted and not await limiter.hit(limit.item, policy, limit.key, cost=granted):
                return 0
            return granted

        return await self._run(op)


def _quota_window(limit: Limit, remaining: int, reset_time: float) -> Window:
    q = _quota("", limit.item, remaining, reset_time)
    return Window(limit, q.remaining, q.reset)


def _quota(policy: str, item: RateLimitItem, remaining: int, reset_time: float) -> Quota:
    window = int(item.get_expiry())
    reset = max(0, min(window, int(reset_time - time.time() + 0.999)))
    return Quota(policy, item.amount, window, remaining, reset)
