"""Credential caches that hear every change (keydirectory.py, notify.py, migration 0014).

While a replica's listener answers its heartbeats, a cached key is served past the
short TTL without a lookup, and any change to a key, node, tenant or reader key moves
the watch at commit, on every replica, so nothing read before it is trusted past the
short TTL. A lost listener trusts nothing past the short TTL until it is back.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiohttp.test_utils import TestClient

from honeymesh_hub import state
from honeymesh_hub.clock import ManualClock
from honeymesh_hub.config import Config
from honeymesh_hub.keydirectory import CredentialWatch, KeyDirectory
from honeymesh_hub.notify import LISTENER_NAME
from honeymesh_hub.store.db import connect
from tests.integration.test_reader_keys import AiohttpClient, _as_reader, _key, _start
from tests.support import Hub

# Every await of a notice or a heartbeat is bounded: a listener that never hears fails
# the test by name instead of hanging it.
HEARD_WITHIN = 10.0


def _listening(config: Config) -> Config:
    return dataclasses.replace(
        config, identity_cache_seconds=2.0, identity_cache_listening_seconds=60.0
    )


def _app(hub: Hub) -> Any:
    client: TestClient[Any, Any] = hub.client
    return client.server.app


def _watch(hub: Hub) -> CredentialWatch:
    watch: CredentialWatch = _app(hub)[state.CREDENTIALS]
    return watch


async def _live(hub: Hub) -> None:
    await asyncio.wait_for(_watch(hub).until_live(), HEARD_WITHIN)


async def _heard_since(hub: Hub, generation: int) -> None:
    await asyncio.wait_for(_watch(hub).moved_past(generation), HEARD_WITHIN)


async def test_a_listening_replica_keeps_a_reader_key_past_the_short_ttl(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock
) -> None:
    hub = await _start(aiohttp_client, _listening(hub_config), clock)
    headers = {"X-Api-Key": (await _key(hub, await hub.tenant()))["key"]}
    await _live(hub)
    readers = _app(hub)[state.READERS]
    assert (await _as_reader(hub, headers)).status == 200
    looked_up = readers.lookups
    clock.advance(30)
    assert (await _as_reader(hub, headers)).status == 200
    assert readers.lookups == looked_up
    clock.advance(31)  # past the listening TTL: looked up again
    assert (await _as_reader(hub, headers)).status == 200
    assert readers.lookups == looked_up + 1


async def _cached_past_the_short_ttl(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock
) -> tuple[Hub, Hub, str, dict[str, Any]]:
    """Two listening replicas; a reader key made on one, cached on two and still
    served there 10 s later (past the short TTL): (one, two, tenant id, key)."""
    config = _listening(hub_config)
    one = await _start(aiohttp_client, config, clock)
    two = await _start(aiohttp_client, config, clock)
    tenant_id = await one.tenant()
    made = await _key(one, tenant_id)
    headers = {"X-Api-Key": made["key"]}
    await _live(two)
    assert (await _as_reader(two, headers)).status == 200  # cached on two
    clock.advance(10)
    assert (await _as_reader(two, headers)).status == 200  # still, past the short TTL
    return one, two, tenant_id, made


async def test_a_revoke_reaches_a_listening_replica_within_the_short_ttl(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock
) -> None:
    one, two, _, made = await _cached_past_the_short_ttl(aiohttp_client, hub_config, clock)
    headers = {"X-Api-Key": made["key"]}
    generation = _watch(two).generation
    assert (await one.call("DELETE", f"/v1/admin/reader-keys/{made['key_id']}")).status == 204
    await _heard_since(two, generation)
    # Read 10 s ago, before the notice: no longer trusted, so looked up and refused.
    reply = await _as_reader(two, headers)
    assert reply.status == 401, reply.body


async def test_a_tenant_change_moves_every_replicas_watch(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock
) -> None:
    one, two, tenant_id, made = await _cached_past_the_short_ttl(aiohttp_client, hub_config, clock)
    headers = {"X-Api-Key": made["key"]}
    generation = _watch(two).generation
    reply = await one.call("PATCH", f"/v1/admin/tenants/{tenant_id}", {"status": "suspended"})
    assert reply.status == 200, reply.body
    await _heard_since(two, generation)
    reply = await _as_reader(two, headers)
    assert (reply.status, reply.body["code"]) == (403, "tenant_suspended"), reply.body


async def test_only_what_a_lookup_decides_is_announced(hub: Hub) -> None:
    """A reader key's once-a-minute last use and a node enrollment announce nothing
    (else every bouncer's poll would empty every replica's cache); a rename does."""
    made = await _key(hub, await hub.tenant())
    heard: list[str] = []
    sentinel = asyncio.get_running_loop().create_future()

    def on_notice(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        heard.append(payload)
        if payload == "sentinel" and not sentinel.done():
            sentinel.set_result(None)

    listener = await connect(hub.database_url)
    writer = await connect(hub.database_url)
    try:
        await listener.add_listener("honeymesh_credentials", on_notice)
        await writer.execute(
            "UPDATE reader_keys SET last_used_at = now() WHERE id = $1", made["key_id"]
        )
        await hub.enroll()
        await writer.execute("SELECT pg_notify('honeymesh_credentials', 'sentinel')")
        await asyncio.wait_for(sentinel, HEARD_WITHIN)
        assert heard == ["sentinel"]  # NOTIFY delivers in commit order
        await writer.execute(
            "UPDATE reader_keys SET name = 'renamed' WHERE id = $1", made["key_id"]
        )
        await writer.execute("SELECT pg_notify('honeymesh_credentials', 'sentinel')")
        while heard.count("sentinel") < 2:
            sentinel = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(sentinel, HEARD_WITHIN)
        assert heard == ["sentinel", "reader_keys", "sentinel"]
    finally:
        await listener.close()
        await writer.close()


async def test_a_lost_listener_trusts_nothing_past_the_short_ttl_until_it_is_back(
    hub: Hub, hub_config: Config
) -> None:
    app = _app(hub)
    watch = _watch(hub)
    ticks = ManualClock(0.0)
    directory = KeyDirectory(app[state.POOL], ttl=2.0, watch=watch, listening_ttl=60.0, clock=ticks)
    node = await hub.enroll()
    keyid = node.key.keyid
    await _live(hub)
    assert (await directory.get(keyid)) is not None
    ticks.advance(10)
    assert (await directory.get(keyid)) is not None
    assert directory.lookups == 1
    generation = watch.generation
    conn = await connect(hub_config.database_url)
    try:
        ended = await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = current_database()) t",
            LISTENER_NAME,
        )
    finally:
        await conn.close()
    assert ended >= 1
    await _heard_since(hub, generation)
    assert (await directory.get(keyid)) is not None  # read before the loss: looked up
    assert directory.lookups == 2
    await _live(hub)  # back: what is read now is trusted past the short TTL again
    ticks.advance(10)
    await directory.get(keyid)
    looked_up = directory.lookups
    ticks.advance(10)
    await directory.get(keyid)
    assert directory.lookups == looked_up


async def test_a_revoked_node_is_looked_up_again_after_the_notice(hub: Hub) -> None:
    app = _app(hub)
    watch = _watch(hub)
    ticks = ManualClock(0.0)
    directory = KeyDirectory(app[state.POOL], ttl=2.0, watch=watch, listening_ttl=60.0, clock=ticks)
    node = await hub.enroll()
    await _live(hub)
    found = await directory.get(node.key.keyid)
    assert found is not None and found.node_revoked_at is None
    ticks.advance(10)
    generation = watch.generation
    reply = await hub.call("POST", f"/v1/admin/nodes/{node.node_id}/revoke", {"reason": "t"})
    assert reply.status == 200, reply.body
    await _heard_since(hub, generation)
    found = await directory.get(node.key.keyid)
    assert found is not None and found.node_revoked_at is not None


async def test_a_watch_that_hears_nothing_trusts_the_short_ttl_only(hub: Hub) -> None:
    deaf = CredentialWatch()  # no listener: never live
    ticks = ManualClock(0.0)
    directory = KeyDirectory(
        _app(hub)[state.POOL], ttl=2.0, watch=deaf, listening_ttl=60.0, clock=ticks
    )
    keyid = (await hub.enroll()).key.keyid
    await directory.get(keyid)
    ticks.advance(1.9)
    await directory.get(keyid)
    assert directory.lookups == 1
    ticks.advance(0.1)
    await directory.get(keyid)
    assert directory.lookups == 2


def test_a_watch_is_live_only_shortly_after_an_answered_heartbeat() -> None:
    ticks = ManualClock(100.0)
    watch = CredentialWatch(clock=ticks, live_for=2.0)
    assert not watch.live()
    watch.heard(sent_at=99.0)  # sent a second ago
    assert watch.live()
    ticks.advance(0.99)
    assert watch.live()
    ticks.advance(0.01)
    assert not watch.live()
    watch.heard(sent_at=ticks())
    generation = watch.generation
    watch.lost()
    assert not watch.live() and watch.generation == generation + 1
