"""The rate limiter against a real Redis: daily caps shared by replicas never overrun
(PROTOCOL.md section 9)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from honeymesh_hub.metrics import Metrics
from honeymesh_hub.ratelimit import Limit, RateLimiter, per_day
from honeymesh_hub.redisconn import CLIENT_NAME, MAX_CONNECTIONS, RedisGate
from tests.conftest import Services


@pytest.fixture
async def replicas(services: Services, redis_prefix: str) -> AsyncIterator[list[RateLimiter]]:
    """Eight limiters with their own Redis connections, as eight hub replicas.

    The timeout is generous: a loaded CI machine can take longer than the hub's 0.5 s to
    open 64 connections, and a limiter that times out counts in memory instead (its
    documented degraded mode), which is not what these tests are about.
    """
    gates = [RedisGate(services.redis_url, redis_prefix, Metrics(), timeout=10) for _ in range(8)]
    yield [RateLimiter(gate) for gate in gates]
    assert {gate.state for gate in gates} == {"ok"}, "a limiter fell back to memory"
    for gate in gates:
        await gate.close()


async def test_concurrent_admit_never_overruns_a_cap(replicas: list[RateLimiter]) -> None:
    node = Limit(per_day(5), "node-1")
    tenant = Limit(per_day(7), "tenant-1")

    async def approve(limiter: RateLimiter, limits: list[Limit]) -> bool:
        return (await limiter.admit([("auto_approvals", lim, 1) for lim in limits])).allowed

    granted = await asyncio.gather(
        *(approve(replicas[i % len(replicas)], [node, tenant]) for i in range(64))
    )
    assert sum(granted) == 5
    # All or nothing: the refused ones charged the tenant's window nothing.
    assert await replicas[0].used("auto_approvals", tenant) == 5
    granted = await asyncio.gather(
        *(approve(replicas[i % len(replicas)], [tenant]) for i in range(64))
    )
    assert sum(granted) == 2
    assert await replicas[0].used("auto_approvals", tenant) == 7


async def test_concurrent_admit_in_memory_never_overruns_a_cap() -> None:
    limiter = RateLimiter(RedisGate(None, "hm:", Metrics()))
    cap = Limit(per_day(3), "tenant-1")
    admissions = await asyncio.gather(*(limiter.admit([("auto", cap, 1)]) for _ in range(32)))
    assert sum(a.allowed for a in admissions) == 3


async def test_admit_names_the_window_that_refused(replicas: list[RateLimiter]) -> None:
    roomy, spent = Limit(per_day(10), "tenant-1"), Limit(per_day(1), "node-1")
    assert (await replicas[0].admit([("publish", spent, 1)])).allowed
    for limiter in (replicas[0], RateLimiter(RedisGate(None, "hm:", Metrics()))):
        if limiter is not replicas[0]:
            assert (await limiter.admit([("publish", spent, 1)])).allowed
        admission = await limiter.admit([("publish", roomy, 1), ("publish", spent, 1)])
        assert (admission.allowed, admission.refused) == (False, 1)
        assert await limiter.used("publish", roomy) == 0


async def _hub_connections(redis_url: str) -> int:
    probe = aioredis.Redis.from_url(redis_url)
    try:
        clients = await probe.client_list()
    finally:
        await probe.aclose()
    return sum(1 for c in clients if c.get("name") == CLIENT_NAME)


async def test_a_burst_shares_a_bounded_pool_of_connections(
    services: Services, redis_prefix: str
) -> None:
    """500 calls at once, through the gate's scripts and limits' own storage: the 400
    admissions share the one pipelined connection, limits' calls at most
    MAX_CONNECTIONS of the pool, and every call is answered by Redis (none falls back
    to memory)."""
    before = await _hub_connections(services.redis_url)
    gate = RedisGate(services.redis_url, redis_prefix, Metrics(), timeout=10)
    limiter = RateLimiter(gate)
    try:
        caps = [Limit(per_day(1), f"node-{i}") for i in range(400)]
        admitted = await asyncio.gather(*(limiter.admit([("burst", cap, 1)]) for cap in caps))
        assert await _hub_connections(services.redis_url) - before == 1
        used = await asyncio.gather(*(limiter.used("burst", cap) for cap in caps[:100]))
        opened = await _hub_connections(services.redis_url) - before
        assert all(a.allowed for a in admitted)
        assert used == [1] * 100
        assert gate.state == "ok"
        assert 2 < opened <= MAX_CONNECTIONS + 1, opened
    finally:
        await gate.close()
    assert await _hub_connections(services.redis_url) == before
