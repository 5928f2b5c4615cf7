"""The long-poll cap (PROTOCOL.md section 8: at most 2 waiting feed requests a node)
across Redis outages: no blip may lock a node out of long-polling or lift its cap."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from honeymesh_hub import state
from honeymesh_hub.clock import ManualClock
from honeymesh_hub.config import Config
from honeymesh_hub.metrics import Metrics
from honeymesh_hub.redisconn import RedisGate
from tests.conftest import Services
from tests.integration.foundation import AiohttpClient, start_hub, until_redis
from tests.support import Node


async def _cursor(node: Node) -> str:
    reply = await node.request("GET", "/v1/feed")
    assert reply.status == 200 and not reply.body["more"], reply.body
    return str(reply.body["cursor"])


def _wait(node: Node, cursor: str, seconds: int) -> asyncio.Task[Any]:
    return asyncio.create_task(node.request("GET", f"/v1/feed?wait={seconds}&cursor={cursor}"))


async def test_waiters_across_redis_outages_keep_the_cap_and_never_lock_out(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock, own_redis: Any
) -> None:
    hub = await start_hub(
        aiohttp_client, dataclasses.replace(hub_config, redis_url=own_redis.url), clock
    )
    notifier = hub.client.app[state.NOTIFIER]
    node = await hub.enroll()
    cursor = await _cursor(node)

    # Two waiters start while Redis is up and end while it is down: their ends never
    # reach Redis. Once their own deadlines pass, the node long-polls again.
    held = [_wait(node, cursor, 1) for _ in range(2)]
    await asyncio.wait_for(notifier.until_waiting(2), 10)
    own_redis.stop()
    await until_redis(hub, "degraded")
    for task in held:
        assert (await task).status == 200
    own_redis.start()
    await until_redis(hub, "ok")
    await asyncio.sleep(3.5)
    reply = await node.request("GET", f"/v1/feed?wait=1&cursor={cursor}")
    assert reply.status == 200, reply.body

    # A waiter that starts while Redis is down and ends once it is back does not lift
    # the cap: a third concurrent waiter is still refused.
    own_redis.stop()
    await until_redis(hub, "degraded")
    lone = _wait(node, cursor, 2)
    await asyncio.wait_for(notifier.until_waiting(1), 10)
    own_redis.start()
    await until_redis(hub, "ok")
    assert (await lone).status == 200
    held = [_wait(node, cursor, 5) for _ in range(2)]
    await asyncio.wait_for(notifier.until_waiting(2), 10)
    third = await node.request("GET", f"/v1/feed?wait=5&cursor={cursor}")
    assert (third.status, third.code) == (429, "rate_limited")
    assert "Retry-After" in third.headers

    # While Redis is down the cap holds per process too.
    own_redis.stop()
    await until_redis(hub, "degraded")
    notifier.wake_all()
    for task in held:
        assert (await task).status == 200
    down = [_wait(node, cursor, 5) for _ in range(2)]
    await asyncio.wait_for(notifier.until_waiting(2), 10)
    third = await node.request("GET", f"/v1/feed?wait=5&cursor={cursor}")
    assert (third.status, third.code) == (429, "rate_limited")
    notifier.wake_all()
    for task in down:
        assert (await task).status == 200


async def test_lost_releases_free_themselves_at_their_deadlines(
    services: Services, redis_prefix: str
) -> None:
    """A waiter whose release never reached Redis (a dead replica) holds its slot only
    until its own deadline, and the key expires with its last waiter."""
    gate = RedisGate(services.redis_url, redis_prefix, Metrics())
    other = RedisGate(services.redis_url, redis_prefix, Metrics())  # another replica
    try:
        assert await gate.waiter_enter("waiters:n", "a", 2, 0.5)
        assert await gate.waiter_enter("waiters:n", "b", 2, 0.5)
        assert not await other.waiter_enter("waiters:n", "c", 2, 5)
        assert gate.client is not None
        assert 0 < await gate.client.pttl(redis_prefix + "waiters:n") <= 500
        await asyncio.sleep(0.6)  # "a" and "b" are never released
        assert await other.waiter_enter("waiters:n", "d", 2, 5)
        assert await other.waiter_enter("waiters:n", "e", 2, 5)
        assert not await other.waiter_enter("waiters:n", "f", 2, 5)
        await other.waiter_leave("waiters:n", "d")
        assert await gate.waiter_enter("waiters:n", "g", 2, 5)
    finally:
        await gate.close()
        await other.close()


async def test_ends_of_one_turn_reach_redis_together_and_only_their_own(
    services: Services, redis_prefix: str
) -> None:
    """A wake-up ends hundreds of waiters of different nodes in one loop turn: each end
    removes its own member from its own node's set, and nothing else."""
    gate = RedisGate(services.redis_url, redis_prefix, Metrics(), timeout=10)
    try:
        keys = [f"waiters:n{i}" for i in range(300)]
        for key in keys:
            assert await gate.waiter_enter(key, "kept", 2, 30)
            assert await gate.waiter_enter(key, "ended", 2, 30)
        await asyncio.gather(*(gate.waiter_leave(key, "ended") for key in keys))
        assert gate.client is not None and gate.state == "ok"
        left = await asyncio.gather(
            *(gate.client.zrange(redis_prefix + key, 0, -1) for key in keys)
        )
        assert left == [[b"kept"]] * len(keys)
    finally:
        await gate.close()
