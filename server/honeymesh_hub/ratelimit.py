"""Rate limits on `limits` (PROTOCOL.md section 9), shared across replicas via Redis.

Windows are sliding (`SlidingWindowCounterRateLimiter`: two counters a key, atomic in
`limits`' own Lua). When Redis fails, the same limits are counted per process in
memory, and `RedisGate` reports `degraded`. Answers carry the IETF RateLimit fields.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from .errors import RateLimited
from .redisconn import TIMEOUT_SECONDS, RedisGate

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


class RateLimiter:
    def __init__(self, redis_url: str | None, gate: RedisGate) -> None:
        self._gate = gate
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared = (
            SlidingWindowCounterRateLimiter(
                RedisStorage(
                    redis_url,
                    implementation="redispy",
                    wrap_exceptions=True,
                    key_prefix=gate.prefix + "rl",
                    socket_timeout=TIMEOUT_SECONDS,
                    socket_connect_timeout=TIMEOUT_SECONDS,
                )
            )
            if redis_url
            else None
        )

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

    async def consume(self, policy: str, limits: Sequence[Limit], cost: int = 1) -> Quota:
        """Charge `cost` to every limit; raise RateLimited (with headers) when one is spent.

        `hit` checks and charges atomically in Redis, so concurrent requests on any
        replica never pass a limit together. A later limit refusing leaves the earlier
        ones charged: the node pays for a batch its tenant's limit refused.
        """

        async def op(limiter: SlidingWindowCounterRateLimiter) -> Quota:
            tightest: Quota | None = None
            for limit in limits:
                allowed = cost <= limit.item.amount and await limiter.hit(
                    limit.item, policy, limit.key, cost=cost
                )
                stats = await limiter.get_window_stats(limit.item, policy, limit.key)
                quota = _quota(policy, limit.item, stats.remaining, stats.reset_time)
                if not allowed:
                    refused = Quota(policy, quota.quota, quota.window, 0, max(1, quota.reset))
                    raise RateLimited(
                        f"Rate limit {policy!r} reached; retry in {refused.reset} s.",
                        headers=refused.headers(),
                    )
                if tightest is None or quota.remaining < tightest.remaining:
                    tightest = quota
            assert tightest is not None
            return tightest

        return await self._run(op)

    async def within(self, policy: str, limit: Limit) -> bool:
        """Whether one more unit would pass the limit; charges nothing."""
        return await self._run(lambda lim: lim.test(limit.item, policy, limit.key))

    async def count(self, policy: str, limit: Limit) -> bool:
        """Charge one unit without refusing; True while still within the limit."""
        return await self._run(lambda lim: lim.hit(limit.item, policy, limit.key))

    async def take(self, policy: str, limit: Limit, wanted: int) -> int:
        """Charge up to `wanted` units; return how many the limit granted."""

        async def op(limiter: SlidingWindowCounterRateLimiter) -> int:
            stats = await limiter.get_window_stats(limit.item, policy, limit.key)
            granted = max(0, min(wanted, stats.remaining))
            if granted and not await limiter.hit(limit.item, policy, limit.key, cost=granted):
                return 0
            return granted

        return await self._run(op)

    async def take_all(self, policy: str, limits: Sequence[Limit]) -> bool:
        """One unit from every limit, or none when any is spent."""

        async def op(limiter: SlidingWindowCounterRateLimiter) -> bool:
            for limit in limits:
                if not await limiter.test(limit.item, policy, limit.key):
                    return False
            for limit in limits:
                await limiter.hit(limit.item, policy, limit.key)
            return True

        return await self._run(op)


def _quota(policy: str, item: RateLimitItem, remaining: int, reset_time: float) -> Quota:
    window = int(item.get_expiry())
    reset = max(0, min(window, int(reset_time - time.time() + 0.999)))
    return Quota(policy, item.amount, window, remaining, reset)
