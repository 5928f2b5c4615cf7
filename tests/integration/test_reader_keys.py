"""Reader keys (PROTOCOL.md sections 1, 4, 9 and 13 r2): the admin routes, and the
reader gate (`auth.authenticate_reader`) through a test-only route, since the reader
routes themselves (CrowdSec, firewall lists) come later."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import ipaddress
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from honeymesh_hub import state
from honeymesh_hub.admission import admit_reader
from honeymesh_hub.app import create_app
from honeymesh_hub.auth import authenticate_reader
from honeymesh_hub.clock import ManualClock, rfc3339, to_datetime
from honeymesh_hub.config import Config
from honeymesh_hub.ratelimit import quota_of
from honeymesh_hub.services.admin import MAX_LIVE_READER_KEYS
from honeymesh_hub.services.feed import scopes_of_reader
from honeymesh_hub.services.readerusage import ReaderUsage
from tests.conftest import Services
from tests.integration.conftest import make_admin_token
from tests.integration.foundation import (
    AiohttpClient,
    assert_problem,
    audit_end,
    audit_since,
    fetchval,
    send,
    shared_database,
)
from tests.support import Hub, Reply, approve, trusted

READ = "/test/reader"
READ_CROWDSEC = "/test/reader-crowdsec"


@pytest.fixture(scope="module")
def database_url(services: Services, template_db: str) -> Iterator[str]:
    yield from shared_database(services, template_db)


@pytest.fixture
def hub_config(hub_config: Config) -> Config:
    """The test client as a trusted proxy, so each test picks its source addresses."""
    return dataclasses.replace(hub_config, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))


async def _read(request: web.Request) -> web.Response:
    caller = await authenticate_reader(request)
    windows = await admit_reader(request, caller)
    body: dict[str, Any] = {
        "key_id": str(caller.key_id),
        "tenant_id": str(caller.tenant_id),
        "name": caller.name,
        "scopes": scopes_of_reader(caller),
    }
    return web.json_response(body, headers=quota_of("pull", windows).headers())


async def _read_crowdsec(request: web.Request) -> web.Response:
    caller = await authenticate_reader(request, refusal_status=403)
    return web.json_response({"key_id": str(caller.key_id)})


async def _start(client_factory: AiohttpClient, config: Config, clock: ManualClock) -> Hub:
    """The real app with two test-only routes that authenticate a reader."""
    app = create_app(config, clock=clock)
    app.router.add_get(READ, _read)
    app.router.add_get(READ_CROWDSEC, _read_crowdsec)
    client = await client_factory(app)
    token = await make_admin_token(config.database_url, clock)
    return Hub(client, token, clock, database_url=config.database_url)


@pytest.fixture
async def rhub(aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock) -> Hub:
    return await _start(aiohttp_client, hub_config, clock)


def _address() -> str:
    return str(ipaddress.IPv4Address(0xC6120000 + uuid.uuid4().int % (1 << 17)))


async def _key(hub: Hub, tenant_id: str, name: str = "bouncer", **extra: Any) -> dict[str, Any]:
    reply = await hub.call(
        "POST", f"/v1/admin/tenants/{tenant_id}/reader-keys", {"name": name, **extra}
    )
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.body
    return created


async def _as_reader(
    hub: Hub, headers: dict[str, str], path: str = READ, address: str | None = None
) -> Reply:
    return await send(
        hub, "GET", path, headers={"X-Forwarded-For": address or _address(), **headers}
    )


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- admin routes -----------------------------------------------------------------------


async def test_create_list_and_revoke(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    start = await audit_end(rhub)
    created = await _key(rhub, tenant_id, "edge-1", expires_at="2099-01-01T00:00:00+01:00")
    assert set(created) == {"key_id", "key", "name", "tenant_id", "created_at", "expires_at"}
    assert uuid.UUID(created["key_id"]).version == 4
    key = created["key"]
    assert key.startswith("hmk_") and len(key) == 47
    assert created["name"] == "edge-1" and created["tenant_id"] == tenant_id
    assert created["created_at"] == rfc3339(to_datetime(rhub.now()))
    assert created["expires_at"] == "2098-12-31T23:00:00Z"
    rhub.clock.advance(1)  # oldest first: by creation time
    other = await _key(rhub, tenant_id, "edge-2")
    assert other["expires_at"] is None and other["key"] != key

    # Stored only as a hash: the key itself is nowhere in the database.
    stored = await fetchval(
        rhub.database_url,
        "SELECT key_hash FROM reader_keys WHERE id = $1",
        uuid.UUID(created["key_id"]),
    )
    assert bytes(stored) == hashlib.sha256(key.encode()).digest()
    dumped = await fetchval(rhub.database_url, "SELECT string_agg(r::text, ',') FROM reader_keys r")
    assert key not in dumped

    listed = await rhub.call("GET", f"/v1/admin/tenants/{tenant_id}/reader-keys")
    assert listed.status == 200
    keys = listed.body["reader_keys"]
    assert [k["key_id"] for k in keys] == [created["key_id"], other["key_id"]]
    assert set(keys[0]) == {
        "key_id",
        "tenant_id",
        "name",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "last_seen",
        "polls",
        "decisions_served",
    }
    assert keys[0]["last_used_at"] is None and keys[0]["revoked_at"] is None
    assert key not in listed.raw.decode() and "hash" not in listed.raw.decode()

    # Another tenant's list does not show them.
    elsewhere = await rhub.tenant()
    assert (await rhub.call("GET", f"/v1/admin/tenants/{elsewhere}/reader-keys")).body == {
        "reader_keys": []
    }

    rhub.clock.advance(5)
    revoked = await rhub.call("DELETE", f"/v1/admin/reader-keys/{created['key_id']}")
    assert revoked.status == 204 and revoked.raw == b""
    again = await rhub.call("DELETE", f"/v1/admin/reader-keys/{created['key_id']}")
    assert again.status == 204
    keys = (await rhub.call("GET", f"/v1/admin/tenants/{tenant_id}/reader-keys")).body[
        "reader_keys"
    ]
    assert keys[0]["revoked_at"] == rfc3339(to_datetime(rhub.now()))
    assert keys[1]["revoked_at"] is None

    entries = await audit_since(rhub, start)
    mine = [e for e in entries if e["action"].startswith("reader_key.")]
    assert [(e["action"], e["target"]) for e in mine] == [
        ("reader_key.create", f"reader_key:{created['key_id']}"),
        ("reader_key.create", f"reader_key:{other['key_id']}"),
        ("reader_key.revoke", f"reader_key:{created['key_id']}"),
        ("reader_key.revoke", f"reader_key:{created['key_id']}"),
    ]
    assert all(e["actor"] == "admin:root" for e in mine)
    assert mine[0]["details"]["tenant_id"] == tenant_id
    assert mine[0]["details"]["name"] == "edge-1"
    audit_text = (await rhub.call("GET", f"/v1/admin/audit?after={start}")).raw.decode()
    assert key not in audit_text and other["key"] not in audit_text


async def test_expires_at_must_be_in_the_future(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    past = rfc3339(to_datetime(rhub.now() - 1))
    reply = await rhub.call(
        "POST", f"/v1/admin/tenants/{tenant_id}/reader-keys", {"name": "r", "expires_at": past}
    )
    problem = assert_problem(reply, 422, "validation_failed")
    assert problem["errors"][0]["pointer"] == "/expires_at"
    assert (
        await fetchval(
            rhub.database_url,
            "SELECT count(*) FROM reader_keys WHERE tenant_id = $1",
            uuid.UUID(tenant_id),
        )
        == 0
    )


async def test_at_most_100_live_keys_a_tenant(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    soon = rfc3339(to_datetime(rhub.now() + 60))
    made = [await _key(rhub, tenant_id, expires_at=soon)]
    made += [await _key(rhub, tenant_id, f"k{i}") for i in range(MAX_LIVE_READER_KEYS - 1)]
    path = f"/v1/admin/tenants/{tenant_id}/reader-keys"
    start = await audit_end(rhub)
    assert_problem(await rhub.call("POST", path, {"name": "one too many"}), 409, "conflict")
    assert not [e for e in await audit_since(rhub, start) if e["action"].startswith("reader")]
    # A revoked key frees a place...
    assert (await rhub.call("DELETE", f"/v1/admin/reader-keys/{made[1]['key_id']}")).status == 204
    await _key(rhub, tenant_id, "replacement")
    assert_problem(await rhub.call("POST", path, {"name": "full again"}), 409, "conflict")
    # ... and so does an expired one.
    rhub.clock.advance(61)
    await _key(rhub, tenant_id, "after expiry")
    assert_problem(await rhub.call("POST", path, {"name": "full again"}), 409, "conflict")
    # The cap is per tenant.
    await _key(rhub, await rhub.tenant(), "other tenant")


async def test_concurrent_creates_never_pass_the_cap(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    for i in range(MAX_LIVE_READER_KEYS - 5):
        await _key(rhub, tenant_id, f"k{i}")
    path = f"/v1/admin/tenants/{tenant_id}/reader-keys"
    replies = await asyncio.gather(*(rhub.call("POST", path, {"name": f"c{i}"}) for i in range(20)))
    assert sorted(r.status for r in replies) == [201] * 5 + [409] * 15
    live = await fetchval(
        rhub.database_url,
        "SELECT count(*) FROM reader_keys WHERE tenant_id = $1",
        uuid.UUID(tenant_id),
    )
    assert live == MAX_LIVE_READER_KEYS


# -- the reader gate ----------------------------------------------------------------------


async def test_every_way_a_key_travels(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    made = await _key(rhub, tenant_id, "fw")
    key = made["key"]
    forms = [
        {"X-Api-Key": key},
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"bearer {key}"},
        {"Authorization": f"Token {key}"},
        {"Authorization": f"TOKEN  {key} "},
        {"X-Api-Key": key, "Authorization": f"Bearer {key}"},
        _basic("", key),
        _basic("admin", key),
        _basic("any user at all", key),
        _basic("ünïcode", key),
    ]
    for headers in forms:
        reply = await _as_reader(rhub, headers)
        assert reply.status == 200, (headers, reply.body)
        assert reply.body["key_id"] == made["key_id"]
        assert reply.body["tenant_id"] == tenant_id
        assert reply.body["name"] == "fw"
        # Exactly a node's view of the tenant: its own scope, and mesh with pro.
        assert reply.body["scopes"] == [tenant_id, "mesh"]
    assert (await _as_reader(rhub, {"X-Api-Key": key}, READ_CROWDSEC)).status == 200


async def test_missing_unknown_and_malformed_keys_are_refused(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    key = (await _key(rhub, tenant_id))["key"]
    other = (await _key(rhub, tenant_id, "other"))["key"]
    refused = [
        {},
        {"X-Api-Key": ""},
        {"X-Api-Key": "hmk_" + "A" * 43},
        {"X-Api-Key": key + "x"},
        {"X-Api-Key": key[:-1]},
        {"X-Api-Key": "hma_" + key[4:]},
        {"X-Api-Key": rhub.admin_token},
        {"Authorization": f"Bearer {rhub.admin_token}"},
        {"Authorization": key},
        {"Authorization": f"Basic {key}"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic \u00fc\u00fc=="},
        {"Authorization": "Bearer"},
        {"Authorization": f"Digest {key}"},
        _basic(key, ""),
        {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()},  # no colon
        {"X-Api-Key": key, "Authorization": f"Bearer {other}"},  # two that differ
    ]
    for headers in refused:
        reply = await _as_reader(rhub, headers)
        problem = assert_problem(reply, 401, "unauthorized")
        assert reply.headers["WWW-Authenticate"] == (
            'Basic realm="honeymesh", Bearer realm="honeymesh"'
        )
        assert key not in reply.raw.decode() and "request_id" in problem
        crowdsec = await _as_reader(rhub, headers, READ_CROWDSEC)
        assert_problem(crowdsec, 403, "forbidden")


async def test_repeated_headers_carry_no_key(rhub: Hub) -> None:
    key = (await _key(rhub, await rhub.tenant()))["key"]
    resp = await rhub.client.get(READ, headers=[("X-Api-Key", key), ("X-Api-Key", key)])
    assert resp.status == 401


async def test_an_expired_key_is_unknown(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    key = (await _key(rhub, tenant_id, expires_at=rfc3339(to_datetime(rhub.now() + 10))))["key"]
    assert (await _as_reader(rhub, {"X-Api-Key": key})).status == 200
    rhub.clock.advance(10)
    assert_problem(await _as_reader(rhub, {"X-Api-Key": key}), 401, "unauthorized")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"status": "suspended"}, "tenant_suspended"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "entitlement_expired"),
        ({"plan": "community"}, "not_entitled"),
    ],
)
async def test_the_tenant_must_be_active_unexpired_and_entitled(
    rhub: Hub, change: dict[str, Any], code: str
) -> None:
    tenant_id = await rhub.tenant()
    key = (await _key(rhub, tenant_id))["key"]
    assert (await _as_reader(rhub, {"X-Api-Key": key})).status == 200
    patched = await rhub.call("PATCH", f"/v1/admin/tenants/{tenant_id}", change)
    assert patched.status == 200, patched.body
    assert_problem(await _as_reader(rhub, {"X-Api-Key": key}), 403, code)
    assert_problem(await _as_reader(rhub, {"X-Api-Key": key}, READ_CROWDSEC), 403, code)


async def test_every_refusal_counts_as_a_failed_authentication(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    good = (await _key(rhub, tenant_id))["key"]
    suspended = await rhub.tenant()
    stale = (await _key(rhub, suspended))["key"]
    await rhub.call("PATCH", f"/v1/admin/tenants/{suspended}", {"status": "suspended"})
    address = _address()
    # 30 refusals a minute are answered as such: 401s, CrowdSec 403s and tenant 403s.
    for i in range(30):
        if i % 3 == 0:
            reply = await _as_reader(rhub, {"X-Api-Key": "hmk_" + "B" * 43}, address=address)
            assert reply.status == 401
        elif i % 3 == 1:
            reply = await _as_reader(rhub, {}, READ_CROWDSEC, address=address)
            assert reply.status == 403
        else:
            reply = await _as_reader(rhub, {"X-Api-Key": stale}, address=address)
            assert_problem(reply, 403, "tenant_suspended")
    # Past them, further failures from that address answer 429 ...
    for headers in ({"X-Api-Key": "nonsense"}, {"X-Api-Key": stale}):
        reply = await _as_reader(rhub, headers, address=address)
        assert_problem(reply, 429, "rate_limited")
        assert reply.headers["Retry-After"] == "60"
    # ... while a valid key from it still reads, and other addresses are untouched.
    assert (await _as_reader(rhub, {"X-Api-Key": good}, address=address)).status == 200
    assert (await _as_reader(rhub, {"X-Api-Key": "nonsense"})).status == 401


async def test_pull_is_limited_per_key(rhub: Hub) -> None:
    tenant_id = await rhub.tenant(limits={"pull_per_minute": 3})
    first = (await _key(rhub, tenant_id))["key"]
    second = (await _key(rhub, tenant_id, "second"))["key"]
    for remaining in (2, 1, 0):
        reply = await _as_reader(rhub, {"X-Api-Key": first})
        assert reply.status == 200
        assert reply.headers["RateLimit-Policy"] == '"pull";q=3;w=60'
        assert reply.headers["RateLimit"].startswith(f'"pull";r={remaining};')
    refused = await _as_reader(rhub, {"X-Api-Key": first})
    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["RateLimit-Policy"] == '"pull";q=3;w=60'
    assert int(refused.headers["Retry-After"]) >= 1
    # Another key of the same tenant keeps its own count.
    assert (await _as_reader(rhub, {"X-Api-Key": second})).status == 200


async def test_last_used_is_written_at_most_once_a_minute(rhub: Hub) -> None:
    made = await _key(rhub, await rhub.tenant())
    key_id = uuid.UUID(made["key_id"])

    async def last_used() -> Any:
        return await fetchval(
            rhub.database_url, "SELECT last_used_at FROM reader_keys WHERE id = $1", key_id
        )

    assert await last_used() is None
    first = rhub.now()
    assert (await _as_reader(rhub, {"X-Api-Key": made["key"]})).status == 200
    assert await last_used() == to_datetime(first)
    rhub.clock.advance(59)
    for _ in range(3):
        assert (await _as_reader(rhub, {"X-Api-Key": made["key"]})).status == 200
    assert await last_used() == to_datetime(first)
    rhub.clock.advance(1)
    assert (await _as_reader(rhub, {"X-Api-Key": made["key"]})).status == 200
    assert await last_used() == to_datetime(first + 60)
    listed = await rhub.call("GET", f"/v1/admin/tenants/{made['tenant_id']}/reader-keys")
    assert listed.body["reader_keys"][0]["last_used_at"] == rfc3339(to_datetime(first + 60))


async def test_a_revoked_key_is_unknown_on_every_replica_within_the_ttl(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock
) -> None:
    """Two replicas on one database, each caching keys for 2 s (PROTOCOL.md 4 r2: a
    revoked key answers as unknown within 5 s, on every replica)."""
    config = dataclasses.replace(hub_config, identity_cache_seconds=2.0)
    one = await _start(aiohttp_client, config, clock)
    two = await _start(aiohttp_client, config, clock)
    made = await _key(one, await one.tenant())
    headers = {"X-Api-Key": made["key"]}
    assert (await _as_reader(one, headers)).status == 200
    assert (await _as_reader(two, headers)).status == 200  # now cached on two
    assert (await one.call("DELETE", f"/v1/admin/reader-keys/{made['key_id']}")).status == 204
    # The replica that revoked forgets at once; the other serves its cache a while ...
    assert_problem(await _as_reader(one, headers), 401, "unauthorized")
    clock.advance(1.9)
    assert (await _as_reader(two, headers)).status == 200
    # ... and no longer than its TTL.
    clock.advance(0.1)
    assert_problem(await _as_reader(two, headers), 401, "unauthorized")
    assert_problem(await _as_reader(two, headers, READ_CROWDSEC), 403, "forbidden")


async def test_a_tenant_change_reaches_cached_readers_within_the_ttl(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock
) -> None:
    config = dataclasses.replace(hub_config, identity_cache_seconds=2.0)
    hub = await _start(aiohttp_client, config, clock)
    tenant_id = await hub.tenant()
    headers = {"X-Api-Key": (await _key(hub, tenant_id))["key"]}
    assert (await _as_reader(hub, headers)).status == 200
    await hub.call("PATCH", f"/v1/admin/tenants/{tenant_id}", {"status": "suspended"})
    clock.advance(2)
    assert_problem(await _as_reader(hub, headers), 403, "tenant_suspended")


async def test_the_reader_cache_ttl_is_at_most_two_seconds(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock
) -> None:
    """Even a hub configured with a longer identity cache keeps reader keys 2 s."""
    config = dataclasses.replace(hub_config, identity_cache_seconds=30.0)
    hub = await _start(aiohttp_client, config, clock)
    other = await _start(aiohttp_client, config, clock)
    made = await _key(hub, await hub.tenant())
    headers = {"X-Api-Key": made["key"]}
    assert (await _as_reader(other, headers)).status == 200
    await hub.call("DELETE", f"/v1/admin/reader-keys/{made['key_id']}")
    clock.advance(2)
    assert (await _as_reader(other, headers)).status == 401


OTHER_ROUTES = [
    ("GET", "/v1/admin/allowlist"),
    ("POST", "/v1/admin/tenants"),
    ("GET", "/v1/review/candidates"),
    ("GET", "/v1/feed"),
    ("POST", "/v1/signals"),
    ("GET", "/v1/nodes/self"),
]


@pytest.mark.parametrize(
    ("method", "path"), OTHER_ROUTES, ids=[f"{m} {p}" for m, p in OTHER_ROUTES]
)
async def test_a_reader_key_only_reads(rhub: Hub, method: str, path: str) -> None:
    """Any route but the reader routes answers a valid reader key 403 `forbidden`;
    a revoked one is no credential, and the route's own 401 follows."""
    made = await _key(rhub, await rhub.tenant())
    key = made["key"]
    data = b"{}" if method == "POST" else None
    for headers in (
        {"X-Api-Key": key},
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"Token {key}"},
        _basic("u", key),
    ):
        hdrs = {"X-Forwarded-For": _address(), **headers}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        reply = await send(rhub, method, path, data=data, headers=hdrs)
        assert_problem(reply, 403, "forbidden")
    await rhub.call("DELETE", f"/v1/admin/reader-keys/{made['key_id']}")
    reply = await send(rhub, method, path, data=data, headers={"X-Api-Key": key})
    assert reply.status == 401, reply.body


# -- usage per key (issue #15) ------------------------------------------------------------


async def _listed(hub: Hub, tenant_id: str) -> list[dict[str, Any]]:
    reply = await hub.call("GET", f"/v1/admin/tenants/{tenant_id}/reader-keys")
    assert reply.status == 200, reply.body
    keys: list[dict[str, Any]] = reply.body["reader_keys"]
    return keys


async def _settled(hub: Hub) -> None:
    """Once a stream's body is read its handler may still run (it moves the position
    after write_eof): a request on the same kept-alive connection is handled only once
    it returned."""
    assert (await send(hub, "GET", "/healthz")).status == 200


async def test_usage_of_every_replica_adds_up(
    aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock
) -> None:
    """Polls, decisions served and last seen, counted by two replicas on one database,
    written only when each flushes (never per request)."""
    one = await _start(aiohttp_client, hub_config, clock)
    two = await _start(aiohttp_client, hub_config, clock)
    tenant_id = await one.tenant()
    source = await trusted(one, tenant_id)
    await approve(source, "198.51.100.7")
    await approve(source, "198.51.100.0/28", kind="cidr")
    made = await _key(one, tenant_id)
    headers = {"X-Api-Key": made["key"]}

    stream = await send(one, "GET", "/crowdsec/v1/decisions/stream?startup=true", headers=headers)
    assert stream.status == 200 and len(stream.body["new"]) == 2
    await _settled(one)
    lookup = await send(two, "GET", "/crowdsec/v1/decisions?ip=198.51.100.7", headers=headers)
    assert lookup.status == 200 and len(lookup.body) == 2  # the address and its range
    listed = await send(two, "GET", "/v1/blocklist?format=plain", headers=headers)
    assert listed.status == 200 and len(listed.raw.splitlines()) == 2
    same = await send(
        two,
        "GET",
        "/v1/blocklist?format=plain",
        headers={**headers, "If-None-Match": listed.headers["ETag"]},
    )
    assert same.status == 304
    clock.advance(3)
    # A refused request is no poll, but the key was seen.
    assert (await send(two, "GET", "/v1/blocklist?format=bogus", headers=headers)).status == 422

    # Nothing is written before a flush.
    (before,) = await _listed(one, tenant_id)
    assert (before["polls"], before["decisions_served"], before["last_seen"]) == (0, 0, None)

    await one.client.app[state.READER_USAGE].flush()
    (after_one,) = await _listed(two, tenant_id)
    assert (after_one["polls"], after_one["decisions_served"]) == (1, 2)
    await two.client.app[state.READER_USAGE].flush()
    (both,) = await _listed(one, tenant_id)
    assert (both["polls"], both["decisions_served"]) == (4, 6)
    assert both["last_seen"] == rfc3339(to_datetime(clock()))

    # A second round adds to the first; an empty flush writes nothing.
    delta = await send(one, "GET", "/crowdsec/v1/decisions/stream?startup=false", headers=headers)
    assert delta.status == 200, delta.raw
    # It may add again what the startup answer held (test_crowdsec._caught_up says why).
    again = {d["uuid"] for d in delta.body["new"]}
    assert delta.body["deleted"] == [] and again <= {d["uuid"] for d in stream.body["new"]}
    await _settled(one)
    assert await one.client.app[state.READER_USAGE].flush() == 1
    assert await two.client.app[state.READER_USAGE].flush() == 0
    (later,) = await _listed(one, tenant_id)
    assert (later["polls"], later["decisions_served"]) == (5, 6 + len(again))
    assert made["key"] not in str(later) and "hash" not in str(later)


async def test_usage_held_is_bounded(rhub: Hub) -> None:
    """Past the cap of distinct keys the held counts go to a flush at once."""
    tenant_id = await rhub.tenant()
    keys = [uuid.UUID((await _key(rhub, tenant_id, name=f"k{i}"))["key_id"]) for i in range(3)]
    app = rhub.client.app
    usage = ReaderUsage(app[state.POOL], app[state.METRICS], cap=2)
    now = to_datetime(rhub.now())
    usage.served(keys[0], "blocklist", 3, now)
    usage.served(keys[1], "blocklist", 1, now)
    usage.served(keys[0], "blocklist", 1, now)
    assert len(usage) == 2
    usage.served(keys[2], "blocklist", 5, now)  # full: the first two go to a flush
    assert len(usage) == 1
    await usage.flush()
    assert len(usage) == 0
    figures = {
        k["key_id"]: (k["polls"], k["decisions_served"]) for k in await _listed(rhub, tenant_id)
    }
    assert figures == {str(keys[0]): (2, 4), str(keys[1]): (1, 1), str(keys[2]): (1, 5)}


async def test_the_key_list_refuses_bad_callers_and_ids(rhub: Hub) -> None:
    tenant_id = await rhub.tenant()
    await _key(rhub, tenant_id)
    path = f"/v1/admin/tenants/{tenant_id}/reader-keys"
    for token in (await rhub.reviewer_token(), await rhub.reviewer_token(scope=tenant_id)):
        assert_problem(await rhub.call("GET", path, token=token), 403, "forbidden")
    assert_problem(await send(rhub, "GET", path), 401, "unauthorized")
    assert_problem(await rhub.call("GET", path, token="hma_" + "A" * 43), 401, "unauthorized")
    for bad in (str(uuid.uuid4()), "not-a-uuid", "0"):
        assert_problem(
            await rhub.call("GET", f"/v1/admin/tenants/{bad}/reader-keys"), 404, "not_found"
        )
    # Another tenant's list holds none of this tenant's keys.
    assert await _listed(rhub, await rhub.tenant()) == []
