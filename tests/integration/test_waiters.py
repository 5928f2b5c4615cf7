"""The long-poll cap (PROTOCOL.md section 8: at most 2 waiting feed requests a node)
across Redis outages: no blip may lock a node out of long-polling or lift its cap."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import devservices  # scripts/, on sys.path through tests/conftest.py
from honeymesh_hub import state
from honeymesh_hub.clock import ManualClock
from honeymesh_hub.config import Config
from tests.integration.foundation import AiohttpClient, start_hub
from tests.support import Hub, Node


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    server = devservices.RedisServer(tmp_path / "redis", port=devservices.free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _until_redis(hub: Hub, wanted: str) -> None:
    deadline = time.monotonic() + 10
    while (await hub.call("GET", "/readyz")).body.get("redis") != wanted:
        assert time.monotonic() < deadline, f"redis never became {wanted}"
        await asyncio.sleep(0.05)


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
    await _until_redis(hub, "degraded")
    for task in held:
        assert (await task).status == 200
    own_redis.start()
    await _until_redis(hub, "ok")
    await asyncio.sleep(3.5)
    reply = await node.request("GET", f"/v1/feed?wait=1&cursor={cursor}")
    assert reply.status == 200, reply.body

    # A waiter that starts while Redis is down and ends once it is back does not lift
    # the cap: a third concurrent waiter is still refused.
    own_redis.stop()
    await _until_redis(hub, "degraded")
    lone = _wait(node, cursor, 2)
    await asyncio.wait_for(notifier.until_waiting(1), 10)
    own_redis.start()
    await _until_redis(hub, "ok")
    assert (await lone).status == 200
    held = [_wait(node, cursor, 5) for _ in range(2)]
    await asyncio.wait_for(notifier.until_waiting(2), 10)
    third = await node.request("GET", f"/v1/feed?wait=5&cursor={cursor}")
    assert (third.status, third.code) == (429, "rate_limited")
    assert "Retry-After" in third.headers

    # While Redis is down the cap holds per process too.
    own_redis.stop()
    await _until_redis(hub, "degraded")
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
