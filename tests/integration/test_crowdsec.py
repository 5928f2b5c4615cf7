"""The CrowdSec Local API, bouncer side (PROTOCOL.md 13.1), against the real hub:
startup then deltas (approval, retraction, extension, expiry), an undelivered answer
served again, filters, lookups and `null`, HEAD, usage metrics, 403 bodies, the pull
limit that never refuses a startup, gzip, and a narrowed visibility answering as
startup."""

from __future__ import annotations

import contextlib
import gzip
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from honeymesh_hub import state
from honeymesh_hub.clock import to_datetime
from honeymesh_hub.services.expiry import sweep
from tests.support import Hub, approve, publish, signal, trusted

STREAM = "/crowdsec/v1/decisions/stream"


async def _key(hub: Hub, tenant: str) -> dict[str, Any]:
    reply = await hub.call("POST", f"/v1/admin/tenants/{tenant}/reader-keys", {"name": "cs"})
    assert reply.status == 201, reply.body
    made: dict[str, Any] = reply.body
    return made


async def _get(hub: Hub, path: str, key: str | None, **headers: str) -> tuple[int, Any, Any]:
    if key is not None:
        headers["X-Api-Key"] = key
    resp = await hub.client.get(path, headers=headers)
    raw = await resp.read()
    return resp.status, resp.headers, json.loads(raw) if raw else raw


async def _poll(hub: Hub, key: str, startup: bool = False, query: str = "") -> dict[str, Any]:
    status, _, body = await _get(hub, f"{STREAM}?startup={str(startup).lower()}{query}", key)
    assert status == 200, body
    assert isinstance(body["new"], list) and isinstance(body["deleted"], list)
    result: dict[str, Any] = body
    return result


async def _caught_up(hub: Hub, key: str, held: dict[str, Any]) -> None:
    """Polls after a startup answer until one is empty. A startup reads the active set as
    it stands, but continues from below the oldest transaction then running (a
    sequencer round, say), so the next poll may add again what the startup answer held,
    and nothing else: never a deletion, never a decision it did not hold."""
    uuids = set(_uuids(held["new"]))
    for _ in range(5):
        body = await _poll(hub, key)
        if body == {"new": [], "deleted": []}:
            return
        assert body["deleted"] == [] and set(_uuids(body["new"])) <= uuids, body
    raise AssertionError("the stream did not catch up in five polls")


def _uuids(items: list[dict[str, Any]]) -> list[str]:
    return sorted(i["uuid"] for i in items)


@pytest.fixture
async def world(hub: Hub) -> dict[str, Any]:
    tenant = await hub.tenant()
    source = await trusted(hub, tenant)
    made = await _key(hub, tenant)
    return {"tenant": tenant, "source": source, "key": made["key"], "key_id": made["key_id"]}


async def test_startup_then_deltas(hub: Hub, world: dict[str, Any]) -> None:
    source, key = world["source"], world["key"]
    a = await approve(source, "198.51.100.1")
    b = await approve(source, "198.51.100.64/28", kind="cidr", scenario="ssh-bf")
    first = await _poll(hub, key, startup=True)
    assert _uuids(first["new"]) == sorted([a, b]) and first["deleted"] == []
    by_uuid = {d["uuid"]: d for d in first["new"]}
    ip, cidr = by_uuid[a], by_uuid[b]
    assert isinstance(ip["id"], int) and isinstance(cidr["id"], int) and ip["id"] != cidr["id"]
    assert {k: ip[k] for k in ("origin", "type", "scope", "value", "simulated")} == {
        "origin": "honeymesh",
        "type": "ban",
        "scope": "Ip",
        "value": "198.51.100.1",
        "simulated": False,
    }
    assert ip["duration"] == "1h0m0s" and ip["until"].endswith("Z")
    assert (cidr["scope"], cidr["value"], cidr["scenario"]) == (
        "Range",
        "198.51.100.64/28",
        "ssh-bf",
    )
    await _caught_up(hub, key, first)

    # Approval and retraction.
    c = await approve(source, "203.0.113.5")
    allow = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "198.51.100.1", "reason": "x"})
    assert allow.status == 201
    changes = await _poll(hub, key)
    assert _uuids(changes["new"]) == [c]
    assert [(d["uuid"], d["id"], d["duration"]) for d in changes["deleted"]] == [
        (a, ip["id"], "0s")
    ]
    assert await _poll(hub, key) == {"new": [], "deleted": []}

    # Extension: a delete and a re-add of the same id in one answer.
    hub.clock.advance(600)
    reply = await publish(source, signal(source, "203.0.113.5", confidence=95))
    assert reply.status == 202
    extended = await _poll(hub, key)
    assert _uuids(extended["new"]) == [c] and _uuids(extended["deleted"]) == [c]
    assert extended["new"][0]["id"] == extended["deleted"][0]["id"]
    # the until of an event is written in whole seconds
    assert extended["new"][0]["duration"] in ("1h0m0s", "59m59s")
    assert extended["new"][0]["until"] > changes["new"][0]["until"]
    assert extended["deleted"][0]["duration"] == "0s"

    # Expiry.
    hub.clock.advance(3600)
    await sweep(hub.client.app[state.POOL], to_datetime(hub.now()))
    expired = await _poll(hub, key)
    assert expired["new"] == [] and _uuids(expired["deleted"]) == sorted([b, c])
    assert await _poll(hub, key, startup=True) == {"new": [], "deleted": []}


async def test_a_key_without_a_position_answers_as_startup(hub: Hub, world: dict[str, Any]) -> None:
    a = await approve(world["source"], "198.51.100.2")
    body = await _poll(hub, world["key"], startup=False)
    assert _uuids(body["new"]) == [a] and body["deleted"] == []


async def test_an_undelivered_answer_is_served_again(
    hub: Hub, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, key = world["source"], world["key"]
    await _caught_up(hub, key, await _poll(hub, key, startup=True))
    a = await approve(source, "198.51.100.3")
    original = web.StreamResponse.write_eof
    failed: list[bool] = []

    async def broken(self: web.StreamResponse, data: bytes = b"") -> None:
        if not failed:
            failed.append(True)
            raise ConnectionResetError("the bouncer went away")
        await original(self, data)

    monkeypatch.setattr(web.StreamResponse, "write_eof", broken)
    with contextlib.suppress(aiohttp.ClientError):  # the connection was cut
        resp = await hub.client.get(f"{STREAM}?startup=false", headers={"X-Api-Key": key})
        await resp.read()
    assert failed
    b = await approve(source, "198.51.100.4")
    again = await _poll(hub, key)
    assert _uuids(again["new"]) == sorted([a, b])
    assert await _poll(hub, key) == {"new": [], "deleted": []}


async def test_filters(hub: Hub, world: dict[str, Any]) -> None:
    source, key = world["source"], world["key"]
    ip = await approve(source, "198.51.100.5", scenario="crowdsecurity/ssh-bf")
    cidr = await approve(source, "198.51.100.16/28", kind="cidr", scenario="http-probe")

    async def startup(query: str) -> list[str]:
        return _uuids((await _poll(hub, key, startup=True, query=query))["new"])

    assert await startup("") == sorted([ip, cidr])
    assert await startup("&scopes=Range") == [cidr]
    assert await startup("&scopes=ip,range") == sorted([ip, cidr])
    assert await startup("&scopes=country") == []
    assert await startup("&origins=crowdsec,cscli") == []
    assert await startup("&origins=honeymesh") == sorted([ip, cidr])
    assert await startup("&scenarios_containing=SSH") == [ip]
    assert await startup("&scenarios_not_containing=ssh,foo") == [cidr]
    later = await approve(source, "198.51.100.6", scenario="crowdsecurity/ssh-bf")
    assert _uuids((await _poll(hub, key, query="&scopes=range"))["new"]) == []
    assert later  # filtered out of that delta; the position moved past it all the same


async def test_lookups_head_and_usage_metrics(hub: Hub, world: dict[str, Any]) -> None:
    source, key = world["source"], world["key"]
    cidr = await approve(source, "198.51.100.32/28", kind="cidr")
    ip = await approve(source, "198.51.100.33")
    status, _, body = await _get(hub, "/crowdsec/v1/decisions?ip=198.51.100.33", key)
    assert status == 200 and _uuids(body) == sorted([cidr, ip])
    status, _, body = await _get(hub, "/crowdsec/v1/decisions?ip=198.51.100.40", key)
    assert status == 200 and _uuids(body) == [cidr]
    status, _, body = await _get(hub, "/crowdsec/v1/decisions?scope=ip&value=198.51.100.40", key)
    assert _uuids(body) == [cidr]
    status, _, body = await _get(hub, "/crowdsec/v1/decisions?range=198.51.100.32/30", key)
    assert _uuids(body) == [cidr]
    resp = await hub.client.get("/crowdsec/v1/decisions?ip=192.0.2.1", headers={"X-Api-Key": key})
    assert (resp.status, await resp.read()) == (200, b"null")
    status, _, body = await _get(hub, "/crowdsec/v1/decisions?ip=nope", key)
    assert status == 400 and set(body) == {"message"}
    for path in (STREAM, "/crowdsec/v1/decisions"):
        resp = await hub.client.head(path, headers={"X-Api-Key": key})
        assert (resp.status, await resp.read()) == (200, b"")
    resp = await hub.client.post(
        "/crowdsec/v1/usage-metrics",
        json={"remediation_components": []},
        headers={"X-Api-Key": key},
    )
    assert resp.status == 201


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Api-Key": "hmk_" + "A" * 43}, {"X-Api-Key": "not-a-key"}],
)
async def test_bad_keys_answer_403_access_forbidden(hub: Hub, headers: dict[str, str]) -> None:
    for method, path in (
        ("GET", f"{STREAM}?startup=true"),
        ("GET", "/crowdsec/v1/decisions?ip=192.0.2.1"),
        ("POST", "/crowdsec/v1/usage-metrics"),
    ):
        resp = await hub.client.request(method, path, headers=headers)
        assert resp.status == 403
        assert await resp.json() == {"message": "access forbidden"}
    resp = await hub.client.head(STREAM, headers=headers)
    assert resp.status == 403


async def test_a_revoked_key_answers_403(hub: Hub, world: dict[str, Any]) -> None:
    assert (await hub.call("DELETE", f"/v1/admin/reader-keys/{world['key_id']}")).status == 204
    status, _, body = await _get(hub, f"{STREAM}?startup=true", world["key"])
    assert (status, body) == (403, {"message": "access forbidden"})


async def test_startup_is_never_refused_by_the_pull_limit(hub: Hub) -> None:
    tenant = await hub.tenant(limits={"pull_per_minute": 2})
    key = (await _key(hub, tenant))["key"]
    for _ in range(4):
        await _poll(hub, key, startup=True)
    status, headers, body = await _get(hub, f"{STREAM}?startup=false", key)
    assert status == 429 and set(body) == {"message"}
    assert int(headers["Retry-After"]) >= 1


async def test_gzip_when_accepted(hub: Hub, world: dict[str, Any]) -> None:
    for i in range(40):
        await approve(world["source"], f"198.51.100.{100 + i}")
    headers = {"X-Api-Key": world["key"], "Accept-Encoding": "gzip, deflate"}
    resp = await hub.client.get(f"{STREAM}?startup=true", headers=headers, auto_decompress=False)
    raw = await resp.read()
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    body = json.loads(gzip.decompress(raw))
    assert len(body["new"]) == 40 and body["deleted"] == []
    plain = await hub.client.get(
        f"{STREAM}?startup=true", headers={"X-Api-Key": world["key"], "Accept-Encoding": "identity"}
    )
    assert "Content-Encoding" not in plain.headers
    assert len((await plain.json())["new"]) == 40


async def test_a_narrowed_visibility_answers_as_startup(hub: Hub) -> None:
    """PROTOCOL.md 8 r2, for reader keys: a position of an older epoch is not used."""
    source = await trusted(hub)
    tenant = await hub.tenant()
    key = (await _key(hub, tenant))["key"]
    mesh = await approve(source, "198.51.100.50")
    assert _uuids((await _poll(hub, key, startup=True))["new"]) == [mesh]
    for change in ({"plan": "community"}, {"plan": "pro"}):
        assert (await hub.call("PATCH", f"/v1/admin/tenants/{tenant}", change)).status == 200
    body = await _poll(hub, key)
    assert _uuids(body["new"]) == [mesh] and body["deleted"] == []
    await _caught_up(hub, key, body)


async def test_what_was_removed_while_a_key_could_not_read_is_deleted(hub: Hub) -> None:
    """A bouncer keeps what it holds until told otherwise: the answer after a narrowed
    visibility (8 r2) deletes what was retracted meanwhile, in any scope."""
    tenant = await hub.tenant()
    source = await trusted(hub, tenant)
    key = (await _key(hub, tenant))["key"]
    kept = await approve(source, "198.51.100.51")
    gone = await approve(source, "198.51.100.52")
    own = await approve(source, "198.51.100.53", share="tenant")
    first = await _poll(hub, key, startup=True)
    assert _uuids(first["new"]) == sorted([kept, gone, own])
    await _caught_up(hub, key, first)
    for narrowing, retracted, cidr in (
        ([{"plan": "community"}, {"plan": "pro"}], gone, "198.51.100.52"),
        ([{"status": "suspended"}, {"status": "active"}], own, "198.51.100.53"),
    ):
        for i, change in enumerate(narrowing):
            if i == 1:
                allow = {"cidr": cidr, "reason": "ours"}
                assert (await hub.call("POST", "/v1/admin/allowlist", allow)).status == 201
            reply = await hub.call("PATCH", f"/v1/admin/tenants/{tenant}", change)
            assert reply.status == 200
        body = await _poll(hub, key)
        assert _uuids(body["deleted"]) == [retracted]
        assert body["deleted"][0]["duration"] == "0s"
        assert kept in _uuids(body["new"]) and retracted not in _uuids(body["new"])
        await _caught_up(hub, key, body)


async def test_many_decisions_stream_in_pages(hub: Hub, world: dict[str, Any]) -> None:
    from honeymesh_hub.services import crowdsec as service

    for i in range(5):
        await approve(world["source"], f"198.51.100.{200 + i}")
    original = service.PAGE
    service.PAGE = 2
    try:
        body = await _poll(hub, world["key"], startup=True)
    finally:
        service.PAGE = original
    assert len(body["new"]) == 5
    assert len({d["id"] for d in body["new"]}) == 5


async def test_bouncers_starting_together_share_the_pages(hub: Hub, world: dict[str, Any]) -> None:
    """Startup pages are read and encoded once per second and filters, whoever asks
    (services/startuppages.py): a second key gets the same bytes from the same pages,
    plain and gzipped."""
    for i in range(5):
        await approve(world["source"], f"198.51.100.{220 + i}")
    other = (await _key(hub, world["tenant"]))["key"]
    pages = hub.client.app[state.STARTUP_PAGES]
    first = await hub.client.get(f"{STREAM}?startup=true", headers={"X-Api-Key": world["key"]})
    body = await first.read()
    reads = pages.misses
    for encoding in ("identity", "gzip"):
        resp = await hub.client.get(
            f"{STREAM}?startup=true",
            headers={"X-Api-Key": other, "Accept-Encoding": encoding},
            auto_decompress=False,
        )
        raw = await resp.read()
        if encoding == "gzip":
            assert resp.headers["Content-Encoding"] == "gzip"
            raw = gzip.decompress(raw)
        assert raw == body
    assert pages.misses == reads and pages.hits >= 2
    assert len(json.loads(body)["new"]) == 5
