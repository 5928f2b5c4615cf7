"""The pipelined Redis connection (pipelined.py) against a real Redis, and against
peers that misbehave: each caller gets its own answer, and every failure is one the
gate's callers already handle (a RedisError), bounded in time and in calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from honeymesh_hub.pipelined import Pipelined, Script
from tests.conftest import Services

_ECHO_KEY = Script("return {KEYS[1], ARGV[1], redis.call('incr', KEYS[1])}")


@pytest.fixture
async def pipelined(services: Services) -> AsyncIterator[Pipelined]:
    client = Pipelined(services.redis_url, 10, "honeymesh-test")
    yield client
    await client.close()


async def test_concurrent_calls_each_get_their_own_answer(
    pipelined: Pipelined, redis_prefix: str
) -> None:
    keys = [f"{redis_prefix}p{i}" for i in range(1000)]
    answers = await asyncio.gather(
        *(pipelined.script(_ECHO_KEY, [key], [f"arg-{i}"]) for i, key in enumerate(keys))
    )
    assert answers == [[key.encode(), f"arg-{i}".encode(), 1] for i, key in enumerate(keys)]


async def test_an_error_reply_fails_its_call_only(pipelined: Pipelined, redis_prefix: str) -> None:
    bad = Script("return redis.call('incr', KEYS[1])")
    await pipelined.call("SET", redis_prefix + "text", "not a number")
    results = await asyncio.gather(
        pipelined.call("INCR", redis_prefix + "n"),
        pipelined.script(bad, [redis_prefix + "text"], []),
        pipelined.call("INCR", redis_prefix + "n"),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ResponseError) and "not an integer" in str(results[1])


async def test_a_flushed_script_cache_loads_the_script_again(
    pipelined: Pipelined, redis_prefix: str
) -> None:
    assert (await pipelined.script(_ECHO_KEY, [redis_prefix + "s"], ["a"]))[2] == 1
    assert await pipelined.call("SCRIPT", "FLUSH") == b"OK"
    assert (await pipelined.script(_ECHO_KEY, [redis_prefix + "s"], ["b"]))[2] == 2


async def test_credentials_and_database_come_from_the_url(own_redis: Any) -> None:
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        await admin.acl_setuser(
            "hub", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
        )
        base = own_redis.url.removeprefix("redis://").split("/")[0]
        client = Pipelined(f"redis://hub:s3cret@{base}/3", 5, "honeymesh-test")
        try:
            assert await client.call("INCR", "counted") == 1
            assert await client.call("CLIENT", "GETNAME") == b"honeymesh-test"
        finally:
            await client.close()
        db3 = aioredis.Redis.from_url(f"redis://{base}/3")
        try:
            assert await db3.get("counted") == b"1"
        finally:
            await db3.aclose()
        assert await admin.get("counted") is None  # not database 0
        wrong = Pipelined(f"redis://hub:wrong@{base}/3", 5, "honeymesh-test")
        with pytest.raises(RedisConnectionError, match="set-up"):
            await wrong.call("PING")
        await wrong.close()
    finally:
        await admin.aclose()


async def test_a_lost_redis_fails_calls_then_reconnects(own_redis: Any) -> None:
    client = Pipelined(own_redis.url, 5, "honeymesh-test")
    try:
        assert await client.call("PING") == b"PONG"
        own_redis.stop()
        with pytest.raises(RedisConnectionError):
            await client.call("PING")
        own_redis.start()
        assert await client.call("PING") == b"PONG"
    finally:
        await client.close()


class _Peer:
    """A TCP server that answers every connection with `reply` (or nothing)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read(1)
        if self.reply is not None:
            writer.write(self.reply)
        await reader.read()  # until the client goes
        writer.close()


@pytest.fixture
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[tuple[_Peer, str]]:
    handler = _Peer(request.param)
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield handler, f"redis://127.0.0.1:{port}/0"
    server.close()


@pytest.mark.parametrize("peer", [None], indirect=True)
async def test_a_silent_redis_times_out_every_waiting_call(peer: tuple[_Peer, str]) -> None:
    handler, url = peer
    client = Pipelined(url, 0.3, "honeymesh-test")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(client.call("PING") for _ in range(3)), return_exceptions=True
        )
        assert loop.time() - started < 2
        # One connect attempt, shared by the three: they fail together, in one timeout.
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert handler.connections == 1
    finally:
        await client.close()


@pytest.mark.parametrize("peer", [b"+OK\r\n"], indirect=True)
async def test_calls_in_flight_are_bounded(peer: tuple[_Peer, str]) -> None:
    """A Redis that took the connection's set-up and then hangs: past `max_pending`
    calls in flight the connection is dropped at once, not after the timeout."""
    handler, url = peer
    client = Pipelined(url, 30, "honeymesh-test", max_pending=4)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(client.call("PING") for _ in range(5)), return_exceptions=True
        )
        assert loop.time() - started < 5
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        assert "too many" in str(results[4])
        assert handler.connections == 1
    finally:
        await client.close()


@pytest.mark.parametrize(
    "peer",
    [b"+OK\r\n+PONG\r\n+PONG\r\n", b"+OK\r\n?garbage\r\n"],
    ids=["a reply nobody asked for", "garbage"],
    indirect=True,
)
async def test_a_peer_out_of_step_drops_the_connection(peer: tuple[_Peer, str]) -> None:
    _, url = peer
    client = Pipelined(url, 2, "honeymesh-test")
    try:
        with pytest.raises(RedisConnectionError):
            await client.call("PING")
    finally:
        await client.close()


def test_it_runs_on_the_workers_event_loop(services: Services, redis_prefix: str) -> None:
    """`serve` workers run uvloop (cli.py), whose transports are not asyncio's."""

    async def run() -> list[Any]:
        client = Pipelined(services.redis_url, 10, "honeymesh-test")
        try:
            return await asyncio.gather(
                *(client.script(_ECHO_KEY, [f"{redis_prefix}u{i}"], ["x"]) for i in range(50))
            )
        finally:
            await client.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        answers = runner.run(run())
    assert answers == [[f"{redis_prefix}u{i}".encode(), b"x", 1] for i in range(50)]
