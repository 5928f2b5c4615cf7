"""The hub's Redis client and its health, shared by nonces and rate limits.

Redis is optional and may fail: every use goes through `RedisGate`, which keeps short
timeouts and, after a failure, skips Redis for `retry_after` seconds so a dead Redis
costs one timeout now and then instead of one per request. Callers fall back
(PostgreSQL nonces, per-process limits) and /readyz says `degraded`.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .metrics import Metrics

log = logging.getLogger("honeymesh.redis")

TIMEOUT_SECONDS = 0.5


class RedisGate:
    def __init__(self, url: str | None, prefix: str, metrics: Metrics, retry_after: float = 2.0):
        self.prefix = prefix
        self.configured = url is not None
        self.client: aioredis.Redis | None = (
            aioredis.Redis.from_url(
                url,
                socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS,
                health_check_interval=30,
            )
            if url
            else None
        )
        self._metrics = metrics
        self._retry_after = retry_after
        self._down_until = 0.0
        # When Redis last failed (monotonic); -inf when never.
        self.last_failure = float("-inf")
        self._local: dict[str, int] = {}

    @property
    def usable(self) -> bool:
        return self.client is not None and time.monotonic() >= self._down_until

    @property
    def state(self) -> str:
        """`ok`, `degraded` or `absent`, as /readyz reports it (PROTOCOL.md section 10)."""
        if not self.configured:
            return "absent"
        return "ok" if time.monotonic() >= self._down_until else "degraded"

    def failed(self, operation: str, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning(
                "redis unreachable; serving without it",
                extra={"fields": {"operation": operation, "error": type(exc).__name__}},
            )
        self._down_until = time.monotonic() + self._retry_after
        self.last_failure = time.monotonic()
        self._metrics.redis_degraded.set(1)
        self._metrics.redis_fallbacks.labels(operation).inc()

    def succeeded(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            self._metrics.redis_degraded.set(0)

    async def ping(self) -> str:
        if self.client is None:
            return "absent"
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self.failed("ping", exc)
            return "degraded"
        self.succeeded()
        return "ok"

    async def counter_add(self, key: str, delta: int, ttl_seconds: int) -> int:
        """Add to a shared counter (per process while Redis is down); the new value.

        The TTL bounds the damage of a replica that dies holding counts.
        """
        if self.client is not None and self.usable:
            try:
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.incrby(self.prefix + key, delta)
                    pipe.expire(self.prefix + key, ttl_seconds)
                    value, _ = await pipe.execute()
            except (RedisError, OSError) as exc:
                self.failed("counter", exc)
            else:
                self.succeeded()
                return int(value)
        value = self._local.get(key, 0) + delta
        if value <= 0:
            self._local.pop(key, None)
        else:
            self._local[key] = value
        return value

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
