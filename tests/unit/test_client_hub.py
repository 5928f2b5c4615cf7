"""HubClient: signed exactly as sent, retried with backoff, Retry-After honoured.

A scripted in-process aiohttp server plays the hub's failures; the sleep and the
random source are fakes, so no test waits for real.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from honeymesh_client.errors import HubError, HubUnreachable, RateLimited
from honeymesh_client.hub import HubClient, RetryPolicy, parse_retry_after
from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import (
    check_content_digest,
    parse_signature_headers,
    signature_base,
    verify_signature,
)

KEY = NodeKey.generate()

Script = list[tuple[int, dict[str, str], Any]]


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class ScriptedHub:
    """Answers from a script; checks every signature like the hub does."""

    def __init__(self) -> None:
        self.script: Script = []
        self.seen: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        sig = parse_signature_headers(
            request.headers.get("Signature-Input"), request.headers.get("Signature")
        )
        path, _, query = request.raw_path.partition("?")
        base = signature_base(
            sig, request.method, path, query, request.headers.get("Content-Digest")
        )
        verify_signature(sig, KEY.public_raw, base)
        if body:
            check_content_digest(request.headers.get("Content-Digest"), body)
        self.seen.append({"nonce": sig.nonce, "target": request.raw_path})
        status, headers, payload = self.script.pop(0) if self.script else (200, {}, {"ok": 1})
        return web.json_response(payload, status=status, headers=headers)


@pytest.fixture
async def hub() -> AsyncIterator[tuple[ScriptedHub, str]]:
    scripted = ScriptedHub()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield scripted, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def make_client(
    url: str, rec: Recorder, rng: Callable[[], float] = lambda: 1.0, **kw: Any
) -> HubClient:
    return HubClient(url, key=KEY, retry=RetryPolicy(**kw), sleep=rec.sleep, rng=rng)


def problem(code: str, status: int) -> dict[str, Any]:
    return {"type": f"urn:honeymesh:problem:{code}", "status": status, "code": code, "detail": "x"}


async def test_retry_after_is_honoured_and_each_attempt_signed_afresh(
    hub: tuple[ScriptedHub, str],
) -> None:
    scripted, url = hub
    scripted.script = [
        (503, {"Retry-After": "2"}, problem("service_unavailable", 503)),
        (429, {"Retry-After": "3"}, problem("rate_limited", 429)),
        (202, {"RateLimit": '"publish";r=7;t=30'}, {"results": []}),
    ]
    rec = Recorder()
    async with make_client(url, rec, rng=lambda: 0.0, attempts=5) as client:
        reply = await client.publish([{"x": 1}])
    assert reply.status == 202 and reply.rate_remaining == 7
    assert rec.sleeps == [2.0, 3.0]
    assert len({s["nonce"] for s in scripted.seen}) == 3


async def test_the_peer_address_of_the_answer_is_remembered(hub: tuple[ScriptedHub, str]) -> None:
    _, url = hub
    async with make_client(url, Recorder()) as client:
        assert client.peer_address is None
        await client.request("GET", "/v1/hub")
        assert client.peer_address == "127.0.0.1"


async def test_query_is_sent_exactly_as_signed(hub: tuple[ScriptedHub, str]) -> None:
    scripted, url = hub
    rec = Recorder()
    async with make_client(url, rec) as client:
        await client.feed("abc_-DEF123", limit=10, wait=0)
        await client.request("GET", "/v1/keys/a%2Fb")
    assert scripted.seen[0]["target"] == "/v1/feed?limit=10&cursor=abc_-DEF123"
    assert scripted.seen[1]["target"] == "/v1/keys/a%252Fb"


async def test_a_long_retry_after_is_not_slept_through(hub: tuple[ScriptedHub, str]) -> None:
    scripted, url = hub
    scripted.script = [(429, {"Retry-After": "60"}, problem("rate_limited", 429))]
    rec = Recorder()
    async with make_client(url, rec, max_delay=30.0) as client:
        with pytest.raises(RateLimited) as caught:
            await client.publish([{"x": 1}])
    assert caught.value.retry_after == 60.0 and rec.sleeps == []


async def test_attempts_are_bounded(hub: tuple[ScriptedHub, str]) -> None:
    scripted, url = hub
    scripted.script = [(503, {}, problem("service_unavailable", 503))] * 3
    rec = Recorder()
    async with make_client(url, rec, attempts=3, base_delay=1.0, max_delay=30.0) as client:
        with pytest.raises(HubError) as caught:
            await client.node_self()
    assert caught.value.status == 503 and caught.value.code == "service_unavailable"
    assert rec.sleeps == [1.0, 2.0]  # full jitter at its ceiling (rng = 1.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500])
async def test_other_errors_are_not_retried(hub: tuple[ScriptedHub, str], status: int) -> None:
    scripted, url = hub
    scripted.script = [(status, {}, problem("whatever", status))]
    rec = Recorder()
    async with make_client(url, rec) as client:
        with pytest.raises(HubError) as caught:
            await client.node_self()
    assert caught.value.status == status and rec.sleeps == []
    assert str(caught.value).startswith(f"the hub refused the request ({status} whatever)")


async def test_connection_errors_back_off_exponentially_with_a_cap(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Recorder()
    draws = iter([1.0, 0.5, 1.0, 1.0, 1.0])
    async with make_client(
        f"http://127.0.0.1:{port}",
        rec,
        rng=lambda: next(draws),
        attempts=6,
        base_delay=1.0,
        max_delay=4.0,
    ) as client:
        with pytest.raises(HubUnreachable, match="cannot reach the hub"):
            await client.node_self()
    assert rec.sleeps == [1.0, 1.0, 4.0, 4.0, 4.0]


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after("7", now) == 7.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    found = parse_retry_after(date, now)
    assert found is not None and 28 <= found <= 31
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_full_jitter() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=3.0)
    assert [policy.backoff(n, lambda: 1.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff(3, lambda: 0.25) == 0.5
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_bad_hub_urls_are_one_sentence() -> None:
    from honeymesh_client.errors import ClientError

    with pytest.raises(ClientError, match="not an http"):
        HubClient("ftp://hub")
    assert json.dumps(str(ClientError("x")))
