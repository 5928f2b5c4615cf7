"""Failed authentication stays cheap (PROTOCOL.md sections 2 and 9): a malformed
credential costs no database query, and sources past the failed-auth limit get only
a few credential lookups at a time, while valid credentials from them still pass."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request
from honeymesh_hub.store import identity as identity_store
from honeymesh_hub.store import tokens as token_store
from tests.integration.foundation import assert_problem, send
from tests.support import Hub


class Spy:
    """Wraps a store function: how often it ran, and how many ran at once at most."""

    def __init__(self, real: Any, delay: float = 0.0) -> None:
        self.real, self.delay = real, delay
        self.calls = self.running = self.most = 0

    async def __call__(self, *args: Any) -> Any:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.delay)
            return await self.real(*args)
        finally:
            self.running -= 1


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


MALFORMED = [
    "hma_nothing",
    "hma_" + "A" * 42,
    "hma_" + "A" * 44,
    "hmr_" + "A" * 42 + "=",
    "hma_" + "A" * 42 + "!",
    "hme_" + "A" * 43,
    "hmx_" + "A" * 43,
    "A" * 47,
    "hma_" + "é" * 43,
]


async def test_malformed_bearer_tokens_cost_no_query(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(token_store.by_hash)
    monkeypatch.setattr(token_store, "by_hash", spy)
    for token in MALFORMED:
        reply = await send(hub, "GET", "/v1/admin/audit", headers=_bearer(token))
        assert_problem(reply, 401, "unauthorized")
        assert "Bearer" in reply.headers["WWW-Authenticate"]
    assert spy.calls == 0
    # A well-formed unknown token is looked up, and a real one still works.
    reply = await send(hub, "GET", "/v1/admin/audit", headers=_bearer("hma_" + "A" * 43))
    assert_problem(reply, 401, "unauthorized")
    assert (await hub.call("GET", "/v1/admin/audit")).status == 200
    assert spy.calls == 2


async def test_malformed_keyid_costs_no_lookup(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(identity_store.identity_by_keyid)
    monkeypatch.setattr(identity_store, "identity_by_keyid", spy)
    key = NodeKey.generate()
    for bad in (key.keyid.upper(), key.keyid[:63], key.keyid + "0", "z" * 64):
        headers = sign_request(key, "GET", "/v1/nodes/self", "", None, created=int(hub.now()))
        headers["Signature-Input"] = headers["Signature-Input"].replace(key.keyid, bad)
        reply = await send(hub, "GET", "/v1/nodes/self", headers=headers)
        assert reply.status == 401, reply.body
    assert spy.calls == 0


async def test_past_the_limit_lookups_are_few_at_a_time_and_valid_ones_pass(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await hub.enroll()
    for _ in range(31):
        await send(hub, "GET", "/v1/admin/audit", headers=_bearer("hma_x"))
    spy = Spy(token_store.by_hash, delay=0.1)
    monkeypatch.setattr(token_store, "by_hash", spy)
    bogus = [
        send(hub, "GET", "/v1/admin/audit", headers=_bearer("hma_" + f"{i:043d}"))
        for i in range(16)
    ]
    valid = hub.call("GET", "/v1/admin/audit")
    *refused, ok = await asyncio.gather(*bogus, valid)
    for reply in refused:
        assert_problem(reply, 429, "rate_limited")
    assert ok.status == 200
    assert (await node.request("GET", "/v1/nodes/self")).status == 200
    assert spy.calls == 17
    assert spy.most <= 4
