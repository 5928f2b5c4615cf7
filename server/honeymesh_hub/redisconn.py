"""The hub's Redis client and its health, shared by rate limits and feed waiters.

Redis is optional and may fail: every use goes through `RedisGate`, which keeps short
timeouts and, after a failure, skips Redis for `retry_after` seconds so a dead Redis
costs one timeout now and then instead of one per request. Callers fall back
(per-process limits and waiter counts) and /readyz says `degraded`. Nonces never
touch Redis (admission.py). Per process, one pipelined connection carries the
hot path's script calls (pipelined.py) and one bounded pool the rest.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .metrics import Metrics
from .pipelined import Arg, Pipelined, Script
from .turnbatch import TurnBatch

log = logging.getLogger("honeymesh.redis")

TIMEOUT_SECONDS = 0.5
# Connections per process, shared by every Redis use of it (limits, waiters): a burst
# of thousands of requests queues for them instead of opening one each. A call that
# finds them all busy waits for one up to POOL_WAIT_SECONDS, longer than a Redis
# call's own timeout: a queue behind a busy event loop is not a Redis failure, and
# counting it as one would flip the hub to its per-process fallback under load.
MAX_CONNECTIONS = 64
POOL_WAIT_SECONDS = 5.0
# What CLIENT LIST shows for the hub's connections.
CLIENT_NAME = "honeymesh-hub"

_LUA = resources.files("honeymesh_hub") / "lua"
_WAITERS = Script((_LUA / "waiters.lua").read_text(encoding="utf-8"))
_LEAVE = Script((_LUA / "leave.lua").read_text(encoding="utf-8"))


class RedisGate:
    def __init__(
        self,
        url: str | None,
        prefix: str,
        metrics: Metrics,
        retry_after: float = 2.0,
        timeout: float = TIMEOUT_SECONDS,
    ):
        self.url = url
        self.prefix = prefix
        self.configured = url is not None
        self.pool: aioredis.BlockingConnectionPool | None = (
            aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=POOL_WAIT_SECONDS,
                client_name=CLIENT_NAME,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                health_check_interval=30,
            )
            if url
            else None
        )
        self.client: aioredis.Redis | None = (
            aioredis.Redis.from_pool(self.pool) if self.pool is not None else None
        )
        self._metrics = metrics
        self._retry_after = retry_after
        self._down_until = 0.0
        # key -> this process's waiters (member -> monotonic deadline); see waiter_enter.
        self._waiters: dict[str, dict[str, float]] = {}
        self._leaves: TurnBatch[tuple[str, str], None] = TurnBatch(self._send_leaves)
        # The hot path's script calls (admissions, waiters) share one pipelined
        # connection (pipelined.py); the pool serves the rest.
        self._pipelined = Pipelined(url, timeout, CLIENT_NAME) if url else None

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

    async def waiter_enter(self, key: str, member: str, cap: int, seconds: float) -> bool:
        """Admit `member` as one of at most `cap` waiters under `key`, for `seconds`.

        A waiter is a member of a sorted set scored by its deadline, so one whose end
        never reached Redis (an outage, a dead replica) lingers only until then. This
        process's own waiters are also kept here: while Redis is down, the cap counts
        them, so an outage can neither lock the key out nor lift its cap for long.
        """
        now = time.monotonic()
        mine = self._waiters.setdefault(key, {})
        for stale in [m for m, until in mine.items() if until <= now]:
            del mine[stale]
        admitted: bool | None = None
        if self.usable:
            args: list[str | int] = [cap, member, math.ceil(seconds * 1000)]
            for other, until in mine.items():
                args.extend((other, math.ceil((until - now) * 1000)))
            try:
                admitted = bool(await self.script(_WAITERS, [self.prefix + key], args))
            except (RedisError, OSError) as exc:
                self.failed("waiters", exc)
            else:
                self.succeeded()
        if admitted is None:
            admitted = len(mine) < cap
        if admitted:
            mine[member] = now + seconds
        elif not mine:
            del self._waiters[key]
        return admitted

    async def waiter_leave(self, key: str, member: str) -> None:
        """End a waiter; if Redis cannot hear it, the member expires at its deadline.

        Ends of one loop turn go in one script call (turnbatch.py, lua/leave.lua): an
        approval that wakes a thousand waiters sends their ends in one round trip. Each
        caller still returns only once Redis has answered its end, so a node's next
        request never counts a waiter that already answered."""
        mine = self._waiters.get(key, {})
        mine.pop(member, None)
        if not mine:
            self._waiters.pop(key, None)
        if self.usable:
            await self._leaves.submit((self.prefix + key, member))

    async def _send_leaves(self, ends: list[tuple[str, str]]) -> list[None]:
        # One script call, not a pipeline of ZREMs: redis-py parses a pipeline's
        # replies one by one in Python, which cost more than the rest of a woken
        # waiter's answer (bench.feed --fanout-only --py-spy).
        try:
            await self.script(_LEAVE, [key for key, _ in ends], [member for _, member in ends])
        except (RedisError, OSError) as exc:
            self.failed("waiters", exc)
        else:
            self.succeeded()
        return [None] * len(ends)

    async def script(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run a Lua script on the pipelined connection; RedisError when it cannot."""
        if self._pipelined is None:
            raise RedisError("redis is not configured")
        return await self._pipelined.script(script, keys, args)

    async def close(self) -> None:
        if self._pipelined is not None:
            await self._pipelined.close()
        if self.client is not None:
            await self.client.aclose()
