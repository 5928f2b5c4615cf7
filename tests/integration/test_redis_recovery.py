"""Nonces across a Redis outage (PROTOCOL.md section 2): a request accepted while
Redis was down is refused as a replay once Redis is back."""

from __future__ import annotations

import dataclasses
from typing import Any

import devservices  # scripts/, on sys.path through tests/conftest.py
from honeymesh_client.protocol.signing import sign_request
from honeymesh_hub.config import Config
from tests.integration.foundation import start_hub, until_redis


async def test_replay_refused_after_redis_comes_back(
    aiohttp_client: Any, hub_config: Config, clock: Any, own_redis: Any
) -> None:
    config = dataclasses.replace(hub_config, redis_url=own_redis.url)
    hub = await start_hub(aiohttp_client, config, clock)
    node = await hub.enroll()
    own_redis.stop()
    await until_redis(hub, "degraded")
    headers = sign_request(node.key, "GET", "/v1/nodes/self", "", None, created=int(clock()))
    first = await hub.client.get("/v1/nodes/self", headers=headers)
    assert first.status == 200
    own_redis.start()
    await until_redis(hub, "ok")
    replay = await hub.client.get("/v1/nodes/self", headers=headers)
    assert replay.status == 401
    assert (await replay.json())["code"] == "replayed_request"


async def test_replay_refused_when_captured_just_before_redis_failed(
    aiohttp_client: Any, hub_config: Config, clock: Any, own_redis: Any
) -> None:
    """PROTOCOL.md 2 r2: the edge of an outage holds too."""
    config = dataclasses.replace(hub_config, redis_url=own_redis.url)
    hub = await start_hub(aiohttp_client, config, clock)
    node = await hub.enroll()
    headers = sign_request(node.key, "GET", "/v1/nodes/self", "", None, created=int(clock()))
    first = await hub.client.get("/v1/nodes/self", headers=headers)
    assert first.status == 200
    own_redis.stop()
    await until_redis(hub, "degraded")
    replay = await hub.client.get("/v1/nodes/self", headers=headers)
    assert replay.status == 401
    assert (await replay.json())["code"] == "replayed_request"


async def test_replay_refused_across_a_healthy_and_a_degraded_replica(
    aiohttp_client: Any, hub_config: Config, clock: Any, own_redis: Any
) -> None:
    """Two replicas on one database: one reaches Redis, the other cannot."""
    healthy = await start_hub(
        aiohttp_client, dataclasses.replace(hub_config, redis_url=own_redis.url), clock
    )
    dead = f"redis://127.0.0.1:{devservices.free_port()}/0"
    degraded = await start_hub(
        aiohttp_client, dataclasses.replace(hub_config, redis_url=dead), clock
    )
    await until_redis(degraded, "degraded")
    node = await healthy.enroll()
    for first, second in ((healthy, degraded), (degraded, healthy)):
        headers = sign_request(node.key, "GET", "/v1/nodes/self", "", None, created=int(clock()))
        assert (await first.client.get("/v1/nodes/self", headers=headers)).status == 200
        replay = await second.client.get("/v1/nodes/self", headers=headers)
        assert replay.status == 401
        assert (await replay.json())["code"] == "replayed_request"
