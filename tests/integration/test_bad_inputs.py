"""Bad inputs on every route (PROTOCOL.md section 3): each answers its problem, and
changes nothing.

The tests of this module share one database (foundation.shared_database); each gets
its own app, Redis prefix and admin token, and compares the snapshots it takes itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_hub.config import Config
from honeymesh_hub.logs import JSONFormatter, install_malformed_request_filter
from tests.conftest import Services
from tests.integration.foundation import (
    assert_problem,
    dumps,
    rotation_body,
    send,
    shared_database,
    signed,
    snapshot,
)
from tests.support import Hub, Node, Reply

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def database_url(services: Services, template_db: str) -> Iterator[str]:
    yield from shared_database(services, template_db)


@pytest.fixture
def hub_config(hub_config: Config) -> Config:
    """The test client as a trusted proxy, so enrollments can come from many addresses
    (10 a minute per address, PROTOCOL.md section 9) without waiting a minute."""
    return dataclasses.replace(hub_config, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))


def _new_address() -> str:
    return str(ipaddress.IPv4Address(0xC6120000 + secrets.randbelow(1 << 17)))  # 198.18.0.0/15


@dataclass
class World:
    """One of everything an id in a path can name."""

    hub: Hub
    tenant_id: str
    enrollment_token: str
    enrollment_token_id: str
    api_token_id: str
    reviewer_token: str
    entry_id: str
    node: Node
    reader_key_id: str

    def path(self, template: str) -> str:
        return template.format(
            tenant=self.tenant_id,
            etoken=self.enrollment_token_id,
            token=self.api_token_id,
            node=self.node.node_id,
            entry=self.entry_id,
            keyid=self.node.key.keyid,
            reader_key=self.reader_key_id,
        )


@pytest.fixture
async def world(hub: Hub) -> AsyncIterator[World]:
    tenant_id = await hub.tenant()
    made = await hub.call(
        "POST", f"/v1/admin/tenants/{tenant_id}/enrollment-tokens", {"max_uses": 5}
    )
    api = await hub.call("POST", "/v1/admin/tokens", {"role": "admin", "name": "spare"})
    entry = await hub.call(
        "POST",
        "/v1/admin/allowlist",
        {"cidr": f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::/64", "reason": "w"},
    )
    assert entry.status == 201, entry.body
    node = await hub.enroll(token=made.body["token"])
    reader = await hub.call("POST", f"/v1/admin/tenants/{tenant_id}/reader-keys", {"name": "w"})
    assert reader.status == 201, reader.body
    yield World(
        hub=hub,
        tenant_id=tenant_id,
        enrollment_token=made.body["token"],
        enrollment_token_id=made.body["token_id"],
        api_token_id=api.body["token_id"],
        reviewer_token=await hub.reviewer_token(),
        entry_id=entry.body["entry_id"],
        node=node,
        reader_key_id=reader.body["key_id"],
    )


# (method, path template, a valid body or None)
ADMIN_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/admin/tenants", {"name": "n", "plan": "pro"}),
    ("GET", "/v1/admin/tenants/{tenant}", None),
    ("PATCH", "/v1/admin/tenants/{tenant}", {"plan": "enterprise"}),
    ("POST", "/v1/admin/tenants/{tenant}/enrollment-tokens", {"max_uses": 1}),
    ("GET", "/v1/admin/tenants/{tenant}/enrollment-tokens", None),
    ("DELETE", "/v1/admin/enrollment-tokens/{etoken}", None),
    ("POST", "/v1/admin/tenants/{tenant}/reader-keys", {"name": "r"}),
    ("GET", "/v1/admin/tenants/{tenant}/reader-keys", None),
    ("DELETE", "/v1/admin/reader-keys/{reader_key}", None),
    ("POST", "/v1/admin/tokens", {"role": "admin", "name": "x"}),
    ("DELETE", "/v1/admin/tokens/{token}", None),
    ("GET", "/v1/admin/nodes", None),
    ("POST", "/v1/admin/nodes/{node}/revoke", None),
    ("PATCH", "/v1/admin/nodes/{node}", {"trusted": True}),
    ("GET", "/v1/admin/allowlist", None),
    ("POST", "/v1/admin/allowlist", {"cidr": "192.0.2.0/24", "reason": "r"}),
    ("DELETE", "/v1/admin/allowlist/{entry}", None),
    ("GET", "/v1/admin/audit", None),
]
ADMIN_BODY_ROUTES = [r for r in ADMIN_ROUTES if r[2] is not None] + [
    ("POST", "/v1/admin/nodes/{node}/revoke", {"reason": "r"}),
]
# Node routes with a body: (method, path template); bodies are built per test.
NODE_BODY_ROUTES = [
    ("POST", "/v1/nodes/enroll"),
    ("POST", "/v1/nodes/self/keys"),
    ("POST", "/v1/signals"),
]
ALL_BODY_ROUTES = [(m, p) for m, p, _ in ADMIN_BODY_ROUTES] + NODE_BODY_ROUTES


def _route_id(route: tuple[Any, ...]) -> str:
    return f"{route[0]} {route[1]}"


async def _body_call(
    world: World,
    method: str,
    template: str,
    data: bytes,
    content_type: str | None = "application/json",
) -> Reply:
    """Send `data` to a body route with the right credential: admin token or signature."""
    path = world.path(template)
    if path.startswith("/v1/admin/"):
        headers = {"Authorization": f"Bearer {world.hub.admin_token}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return await send(world.hub, method, path, data=data, headers=headers)
    # Enrollment is signed by the new key; the other node routes by the node's own.
    if path == "/v1/nodes/enroll":
        node = Node(world.hub, NodeKey.generate())
        headers = {"X-Forwarded-For": _new_address()}
        return await signed(node, method, path, data, content_type=content_type, headers=headers)
    return await signed(world.node, method, path, data, content_type=content_type)


# -- credentials ---------------------------------------------------------------------


def _credentials(world: World) -> list[dict[str, str]]:
    admin = world.hub.admin_token
    return [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer hma_" + "A" * 43},
        {"Authorization": f"Bearer {admin}x"},
        {"Authorization": f"Bearer {admin[:-1]}"},
        {"Authorization": f"Basic {admin}"},
        {"Authorization": admin},
        {"Authorization": f"Bearer {world.enrollment_token}"},
    ]


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=_route_id)
async def test_admin_routes_need_a_valid_bearer_token(
    world: World, route: tuple[str, str, Any]
) -> None:
    method, template, body = route
    before = await snapshot(world.hub.database_url)
    for credential in _credentials(world):
        headers = dict(credential)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = dumps(body)
        reply = await send(world.hub, method, world.path(template), data=data, headers=headers)
        problem = assert_problem(reply, 401, "unauthorized")
        assert reply.headers["WWW-Authenticate"].startswith("Bearer ")
        assert world.hub.admin_token not in reply.raw.decode()
        assert "request_id" in problem
    assert await snapshot(world.hub.database_url) == before


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=_route_id)
async def test_reviewer_token_is_forbidden_on_admin_routes(
    world: World, route: tuple[str, str, Any]
) -> None:
    method, template, body = route
    before = await snapshot(world.hub.database_url)
    reply = await world.hub.call(method, world.path(template), body, token=world.reviewer_token)
    assert_problem(reply, 403, "forbidden")
    assert await snapshot(world.hub.database_url) == before


async def test_bearer_scheme_is_case_insensitive(world: World) -> None:
    headers = {"Authorization": f"bearer {world.hub.admin_token}"}
    assert (await send(world.hub, "GET", "/v1/admin/allowlist", headers=headers)).status == 200


# -- JSON ----------------------------------------------------------------------------

BAD_JSON: list[tuple[str, bytes]] = [
    ("truncated", b'{"name": "x", "plan": '),
    ("not-json", b"name=x&plan=pro"),
    ("empty", b""),
    ("non-utf8", b'{"name": "\xff\xfe", "plan": "pro"}'),
    ("latin1", '{"name": "café", "plan": "pro"}'.encode("latin-1")),
    ("utf8-bom", b'\xef\xbb\xbf{"name": "x", "plan": "pro"}'),
    ("duplicate-keys", b'{"name": "x", "name": "y", "plan": "pro"}'),
    ("nested-duplicate", b'{"limits": {"max_nodes": 1, "max_nodes": 2}}'),
    ("nan", b'{"name": "x", "plan": "pro", "ttl_seconds": NaN}'),
    ("infinity", b'{"max_uses": Infinity}'),
    ("minus-infinity", b'{"max_uses": -Infinity}'),
    ("overflow", b'{"max_uses": 1e400}'),
    ("long-number", b'{"max_uses": 123456789012345678901}'),
    ("long-decimal", b'{"max_uses": 1.0000000000000000001}'),
    ("deep", b"[" * 33 + b"]" * 33),
    ("deep-objects", b'{"a":' * 33 + b"1" + b"}" * 33),
    ("lone-surrogate", b'{"name": "\\ud800", "plan": "pro"}'),
    ("trailing-garbage", b'{"name": "x", "plan": "pro"} x'),
    # U+0000 anywhere in a body is invalid_json (PROTOCOL.md 3 r2).
    ("nul", b'{"name": "a\\u0000b", "plan": "pro"}'),
    ("nul-member", b'{"a\\u0000": 1}'),
    ("nul-nested", b'{"labels": {"a": ["ok", "\\u0000"]}}'),
]


@pytest.mark.parametrize("route", ALL_BODY_ROUTES, ids=_route_id)
async def test_bodies_that_are_not_ijson_answer_400(world: World, route: tuple[str, str]) -> None:
    before = await snapshot(world.hub.database_url)
    for name, data in BAD_JSON:
        if not data and route[1].endswith("/revoke"):
            data = b" "  # no body at all is a valid revoke; a blank one is not JSON
        reply = await _body_call(world, *route, data)
        assert reply.status == 400, (name, reply.body)
        assert_problem(reply, 400, "invalid_json")
    assert await snapshot(world.hub.database_url) == before


@pytest.mark.parametrize("route", ALL_BODY_ROUTES, ids=_route_id)
async def test_limits_of_ijson_are_accepted(world: World, route: tuple[str, str]) -> None:
    """Nesting of exactly 32 and numbers of exactly 20 characters are not invalid_json."""
    for data in (b"[" * 32 + b"]" * 32, b'{"x": 12345678901234567890}'):
        reply = await _body_call(world, *route, data)
        assert_problem(reply, 422, "validation_failed")


# -- shapes ---------------------------------------------------------------------------

SHAPES: list[tuple[str, str, Any, str]] = [
    ("POST", "/v1/admin/tenants", [], ""),
    ("POST", "/v1/admin/tenants", "tenant", ""),
    ("POST", "/v1/admin/tenants", {"name": 1, "plan": "pro"}, "/name"),
    ("POST", "/v1/admin/tenants", {"name": "n"}, "/plan"),
    ("POST", "/v1/admin/tenants", {"name": "n", "plan": "pro", "color": "red"}, "/color"),
    ("POST", "/v1/admin/tenants", {"name": "n", "plan": "pro", "limits": []}, "/limits"),
    (
        "POST",
        "/v1/admin/tenants",
        {"name": "n", "plan": "pro", "limits": {"max_nodes": 1.5}},
        "/limits/max_nodes",
    ),
    ("POST", "/v1/admin/tenants", {"name": "n", "plan": "pro", "expires_at": 5}, "/expires_at"),
    ("PATCH", "/v1/admin/tenants/{tenant}", {"plan": None}, "/plan"),
    ("PATCH", "/v1/admin/tenants/{tenant}", {"status": True}, "/status"),
    ("PATCH", "/v1/admin/tenants/{tenant}", {"limits": {"nope": 1}}, "/limits/nope"),
    ("PATCH", "/v1/admin/tenants/{tenant}", {"tenant_id": "x"}, "/tenant_id"),
    ("POST", "/v1/admin/tenants/{tenant}/enrollment-tokens", {"ttl_seconds": "60"}, "/ttl_seconds"),
    ("POST", "/v1/admin/tenants/{tenant}/enrollment-tokens", {"max_uses": True}, "/max_uses"),
    ("POST", "/v1/admin/tenants/{tenant}/enrollment-tokens", {"token": "mine"}, "/token"),
    ("POST", "/v1/admin/tenants/{tenant}/enrollment-tokens", [1], ""),
    ("POST", "/v1/admin/tenants/{tenant}/reader-keys", {}, "/name"),
    ("POST", "/v1/admin/tenants/{tenant}/reader-keys", [], ""),
    ("POST", "/v1/admin/tenants/{tenant}/reader-keys", "r", ""),
    ("POST", "/v1/admin/tenants/{tenant}/reader-keys", {"name": 1}, "/name"),
    ("POST", "/v1/admin/tenants/{tenant}/reader-keys", {"name": ""}, "/name"),
    ("POST", "/v1/admin/tenants/{tenant}/reader-keys", {"name": "x" * 201}, "/name"),
    ("POST", "/v1/admin/tenants/{tenant}/reader-keys", {"name": "r", "key": "hmk_x"}, "/key"),
    (
        "POST",
        "/v1/admin/tenants/{tenant}/reader-keys",
        {"name": "r", "tenant_id": "x"},
        "/tenant_id",
    ),
    (
        "POST",
        "/v1/admin/tenants/{tenant}/reader-keys",
        {"name": "r", "expires_at": 5},
        "/expires_at",
    ),
    *(
        (
            "POST",
            "/v1/admin/tenants/{tenant}/reader-keys",
            {"name": "r", "expires_at": t},
            "/expires_at",
        )
        for t in (
            "2000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "2030-02-30T00:00:00Z",
            "2030-01-01T00:00:00",
        )
    ),
    ("POST", "/v1/admin/tokens", {"name": "x"}, "/role"),
    ("POST", "/v1/admin/tokens", {"role": "admin"}, "/name"),
    ("POST", "/v1/admin/tokens", {"role": "admin", "name": ["x"]}, "/name"),
    ("POST", "/v1/admin/tokens", {"role": "admin", "name": "x", "token": "hma_x"}, "/token"),
    ("POST", "/v1/admin/tokens", {"role": "reviewer", "name": "x", "scope": 7}, "/scope"),
    # Found by tests/fuzz: the schema now says what the code refused (x-decisions
    # body-rules-in-schemas).
    ("POST", "/v1/admin/tokens", {"role": "admin", "name": "x", "scope": ""}, "/scope"),
    ("POST", "/v1/admin/tokens", {"role": "reviewer", "name": "x"}, "/scope"),
    ("POST", "/v1/admin/tokens", {"role": "reviewer", "name": "x", "scope": "{0}"}, "/scope"),
    (
        "POST",
        "/v1/admin/tenants",
        {"name": "n", "plan": "pro", "expires_at": "0220-07-11T09:44:29Z"},
        "/expires_at",
    ),
    ("PATCH", "/v1/admin/tenants/{tenant}", {"expires_at": "2030-01-01t00:00:00Z"}, "/expires_at"),
    (
        "POST",
        "/v1/admin/tokens",
        {"role": "admin", "name": "x", "expires_at": "9999-06-01T00:00:00Z"},
        "/expires_at",
    ),
    ("POST", "/v1/admin/nodes/{node}/revoke", {"reason": 5}, "/reason"),
    ("POST", "/v1/admin/nodes/{node}/revoke", {"why": "x"}, "/why"),
    ("POST", "/v1/admin/nodes/{node}/revoke", [], ""),
    ("PATCH", "/v1/admin/nodes/{node}", {}, "/trusted"),
    ("PATCH", "/v1/admin/nodes/{node}", {"trusted": "yes"}, "/trusted"),
    ("PATCH", "/v1/admin/nodes/{node}", {"trusted": 1}, "/trusted"),
    ("PATCH", "/v1/admin/nodes/{node}", {"trusted": True, "name": "x"}, "/name"),
    ("POST", "/v1/admin/allowlist", {"cidr": "192.0.2.0/24"}, "/reason"),
    ("POST", "/v1/admin/allowlist", {"cidr": 3232235520, "reason": "r"}, "/cidr"),
    ("POST", "/v1/admin/allowlist", {"cidr": "192.0.2.0/24", "reason": ""}, "/reason"),
    ("POST", "/v1/nodes/enroll", {"public_key": "{pk}", "name": "n"}, "/token"),
    ("POST", "/v1/nodes/enroll", {"token": "{et}", "public_key": "{pk}"}, "/name"),
    ("POST", "/v1/nodes/enroll", {"token": 1, "public_key": "{pk}", "name": "n"}, "/token"),
    ("POST", "/v1/nodes/enroll", {"token": "{et}", "public_key": "!!", "name": "n"}, "/public_key"),
    (
        "POST",
        "/v1/nodes/enroll",
        {"token": "{et}", "public_key": "{pk}", "name": "n", "labels": {"a": 1}},
        "/labels/a",
    ),
    (
        "POST",
        "/v1/nodes/enroll",
        {"token": "{et}", "public_key": "{pk}", "name": "n", "tenant_id": "x"},
        "/tenant_id",
    ),
    ("POST", "/v1/nodes/self/keys", {"public_key": "{pk}"}, "/proof"),
    ("POST", "/v1/nodes/self/keys", {"public_key": "AAAA", "proof": "AAAA"}, "/public_key"),
    ("POST", "/v1/nodes/self/keys", {"public_key": "{pk}", "proof": 5}, "/proof"),
    ("POST", "/v1/nodes/self/keys", {"public_key": "{pk}", "proof": "x", "k": 1}, "/k"),
    # Times: RFC 3339 with an offset, within what the database holds.
    *(
        ("POST", "/v1/admin/tenants", {"name": "n", "plan": "pro", "expires_at": t}, "/expires_at")
        for t in (
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2030-01-01T00:00:00+0100",
            "2030-01-01T00:00:00Z\n",
            "2030-02-30T00:00:00Z",
            "2030-01-01T00:00:00",
        )
    ),
    ("PATCH", "/v1/admin/tenants/{tenant}", {"expires_at": "0001-01-01T00:00:00Z"}, "/expires_at"),
    (
        "POST",
        "/v1/admin/tokens",
        {"role": "admin", "name": "x", "expires_at": "9999-12-31T23:59:59-01:00"},
        "/expires_at",
    ),
    ("POST", "/v1/signals", {"envelopes": []}, "/envelopes"),
    ("POST", "/v1/signals", {"envelope": []}, ""),
]


def _fill(value: Any, world: World, key: NodeKey) -> Any:
    """Put the world's real values where a shape case says {pk} or {et}."""
    if isinstance(value, dict):
        return {k: _fill(v, world, key) for k, v in value.items()}
    if value == "{pk}":
        return key.public_b64
    if value == "{et}":
        return world.enrollment_token
    return value


@pytest.mark.parametrize(
    ("method", "template", "body", "pointer"),
    SHAPES,
    ids=[f"{m} {p} {ptr or '(root)'} {i}" for i, (m, p, _, ptr) in enumerate(SHAPES)],
)
async def test_wrong_shapes_answer_422_with_a_pointer(
    world: World, method: str, template: str, body: Any, pointer: str
) -> None:
    key = NodeKey.generate()
    data = dumps(_fill(body, world, key))
    before = await snapshot(world.hub.database_url)
    path = world.path(template)
    if path == "/v1/nodes/enroll":
        reply = await signed(Node(world.hub, key), method, path, data)
    else:
        reply = await _body_call(world, method, template, data)
    problem = assert_problem(reply, 422, "validation_failed")
    errors = problem["errors"]
    assert errors and all(set(e) == {"pointer", "detail"} for e in errors)
    assert errors[0]["pointer"] == pointer
    assert await snapshot(world.hub.database_url) == before


async def test_bad_rotation_proof_installs_nothing(world: World) -> None:
    node = world.node
    new = NodeKey.generate()
    before = await snapshot(world.hub.database_url)
    for body in (
        {**rotation_body(node, new), "proof": rotation_body(node, NodeKey.generate())["proof"]},
        {**rotation_body(node, new), "proof": "not base64!"},
        rotation_body(Node(world.hub, node.key, node_id=str(uuid.uuid4())), new),
    ):
        reply = await node.request("POST", "/v1/nodes/self/keys", body)
        problem = assert_problem(reply, 422, "validation_failed")
        assert problem["errors"][0]["pointer"] == "/proof"
    assert await snapshot(world.hub.database_url) == before
    assert (await node.request("GET", "/v1/nodes/self")).body["keyid"] == node.key.keyid


# -- size and media type ------------------------------------------------------------------


@pytest.mark.parametrize("route", ALL_BODY_ROUTES, ids=_route_id)
async def test_bodies_over_one_mib_answer_413(world: World, route: tuple[str, str]) -> None:
    before = await snapshot(world.hub.database_url)
    data = b'{"name": "' + b"x" * MIB + b'"}'
    assert_problem(await _body_call(world, *route, data), 413, "payload_too_large")
    assert await snapshot(world.hub.database_url) == before


@pytest.mark.parametrize(
    "route",
    [("POST", "/v1/admin/tenants"), ("POST", "/v1/nodes/enroll"), ("POST", "/v1/signals")],
    ids=_route_id,
)
async def test_chunked_bodies_over_one_mib_answer_413(world: World, route: tuple[str, str]) -> None:
    """Without a Content-Length, the cap holds while reading."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    method, path = route
    headers = {"Content-Type": "application/json"}
    if path.startswith("/v1/admin/"):
        headers["Authorization"] = f"Bearer {world.hub.admin_token}"
    before = await snapshot(world.hub.database_url)
    resp = await world.hub.client.request(method, path, data=chunks(), headers=headers)
    assert resp.status == 413
    body = await resp.json(content_type="application/problem+json")
    assert body["code"] == "payload_too_large"
    assert await snapshot(world.hub.database_url) == before


async def test_a_body_of_exactly_one_mib_is_accepted(world: World) -> None:
    data = b'{"name": "big", "plan": "pro"}'
    data += b" " * (MIB - len(data))
    assert len(data) == MIB
    reply = await _body_call(world, "POST", "/v1/admin/tenants", data)
    assert reply.status == 201, reply.body


MEDIA_TYPES = [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/json-patch+json",
    "application/json; charset=latin-1",
]


@pytest.mark.parametrize("route", ALL_BODY_ROUTES, ids=_route_id)
async def test_other_media_types_answer_415(world: World, route: tuple[str, str]) -> None:
    before = await snapshot(world.hub.database_url)
    for content_type in MEDIA_TYPES:
        reply = await _body_call(world, *route, b"{}", content_type=content_type)
        assert reply.status == 415, (content_type, reply.body)
        assert_problem(reply, 415, "unsupported_media_type")
    assert await snapshot(world.hub.database_url) == before


async def test_json_with_utf8_charset_is_accepted(world: World) -> None:
    reply = await _body_call(
        world,
        "POST",
        "/v1/admin/tenants",
        dumps({"name": "n", "plan": "pro"}),
        content_type="application/json; charset=UTF-8",
    )
    assert reply.status == 201, reply.body


# -- ids -----------------------------------------------------------------------------------

NOT_FOUND: list[tuple[str, str]] = [
    ("GET", "/v1/admin/tenants/{random}"),
    ("GET", "/v1/admin/tenants/{node}"),
    ("GET", "/v1/admin/tenants/not-a-uuid"),
    ("GET", "/v1/admin/tenants/123"),
    ("PATCH", "/v1/admin/tenants/{random}"),
    ("PATCH", "/v1/admin/tenants/xyz"),
    ("POST", "/v1/admin/tenants/{random}/enrollment-tokens"),
    ("POST", "/v1/admin/tenants/{node}/enrollment-tokens"),
    ("GET", "/v1/admin/tenants/{random}/enrollment-tokens"),
    ("GET", "/v1/admin/tenants/zz/enrollment-tokens"),
    ("DELETE", "/v1/admin/enrollment-tokens/{random}"),
    ("DELETE", "/v1/admin/enrollment-tokens/{token}"),
    ("DELETE", "/v1/admin/enrollment-tokens/{etoken_value}"),
    ("POST", "/v1/admin/tenants/{random}/reader-keys"),
    ("POST", "/v1/admin/tenants/{node}/reader-keys"),
    ("POST", "/v1/admin/tenants/zz/reader-keys"),
    ("GET", "/v1/admin/tenants/{random}/reader-keys"),
    ("GET", "/v1/admin/tenants/{reader_key}/reader-keys"),
    ("GET", "/v1/admin/tenants/zz/reader-keys"),
    ("DELETE", "/v1/admin/reader-keys/{random}"),
    ("DELETE", "/v1/admin/reader-keys/{tenant}"),
    ("DELETE", "/v1/admin/reader-keys/{etoken}"),
    ("DELETE", "/v1/admin/reader-keys/hmk_xyz"),
    ("DELETE", "/v1/admin/reader-keys/not-a-uuid"),
    ("DELETE", "/v1/admin/tokens/{random}"),
    ("DELETE", "/v1/admin/tokens/{etoken}"),
    ("DELETE", "/v1/admin/tokens/hma_xyz"),
    ("GET", "/v1/admin/nodes?tenant_id={random}"),
    ("POST", "/v1/admin/nodes/{random}/revoke"),
    ("POST", "/v1/admin/nodes/{tenant}/revoke"),
    ("POST", "/v1/admin/nodes/nope/revoke"),
    ("PATCH", "/v1/admin/nodes/{random}"),
    ("PATCH", "/v1/admin/nodes/{tenant}"),
    ("DELETE", "/v1/admin/allowlist/{random}"),
    ("DELETE", "/v1/admin/allowlist/{node}"),
    ("DELETE", "/v1/admin/allowlist/1.1.1.1"),
    ("GET", "/v1/admin/nowhere"),
    ("GET", "/v1/nowhere"),
    ("GET", "/nowhere"),
]
_BODIES = {
    "PATCH /v1/admin/tenants": {"plan": "pro"},
    "POST /v1/admin/tenants": {"max_uses": 1},
    "PATCH /v1/admin/nodes": {"trusted": True},
}


@pytest.mark.parametrize(("method", "template"), NOT_FOUND, ids=[f"{m} {p}" for m, p in NOT_FOUND])
async def test_unknown_or_foreign_ids_answer_404(world: World, method: str, template: str) -> None:
    path = template.replace("{random}", str(uuid.uuid4())).replace(
        "{etoken_value}", world.enrollment_token
    )
    path = world.path(path)
    body = next((b for k, b in _BODIES.items() if f"{method} {path}".startswith(k)), None)
    if method == "POST" and path.endswith("/reader-keys"):
        body = {"name": "r"}
    before = await snapshot(world.hub.database_url)
    reply = await world.hub.call(method, path, body)
    assert_problem(reply, 404, "not_found")
    assert await snapshot(world.hub.database_url) == before


@pytest.mark.parametrize(
    "keyid", ["0" * 64, "A" * 64, "abc", "{keyid}0", "ab%2Fcd", "{keyid_upper}"]
)
async def test_unknown_keys_answer_404(world: World, keyid: str) -> None:
    keyid = keyid.replace("{keyid_upper}", world.node.key.keyid.upper())
    reply = await world.node.request("GET", "/v1/keys/" + world.path(keyid))
    assert_problem(reply, 404, "not_found")


async def test_known_key_is_found(world: World) -> None:
    reply = await world.node.request("GET", f"/v1/keys/{world.node.key.keyid}")
    assert reply.status == 200
    assert reply.body["status"] == "current"


async def test_wrong_method_is_a_problem(world: World) -> None:
    reply = await world.hub.call("PUT", "/v1/admin/allowlist", {})
    body = assert_problem(reply, 405, "method_not_allowed")
    assert "GET" in reply.headers["Allow"] and body["status"] == 405


# -- malformed HTTP ----------------------------------------------------------------------

_MALFORMED = (
    b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Bad: a\x00b\r\n\r\n",  # NUL in a header
    b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\x01\x02: x\r\n\r\n",  # a garbage header name
    b"GET /hea lthz HTTP/9.9\r\n\r\n",  # a garbage request line
)


async def _raw_exchange(hub: Hub, data: bytes) -> bytes:
    server = hub.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_malformed_requests_answer_400_and_log_one_rate_limited_warning(hub: Hub) -> None:
    server_log = logging.getLogger("aiohttp.server")
    records = _Records()
    server_log.addHandler(records)
    installed_before = list(server_log.filters)
    quiet = install_malformed_request_filter()  # as setup_logging does at serve
    try:
        for i in range(50):
            answer = await _raw_exchange(hub, _MALFORMED[i % len(_MALFORMED)])
            assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    finally:
        server_log.removeHandler(records)
        if quiet not in installed_before:
            server_log.removeFilter(quiet)
    loud = [r for r in records.records if r.levelno >= logging.WARNING]
    assert 1 <= len(loud) <= 2, [r.getMessage() for r in loud]
    assert all(r.levelno == logging.WARNING for r in loud)
    formatter = JSONFormatter()
    for record in loud:
        assert record.exc_info is None
        text = formatter.format(record)
        assert "Traceback" not in text and "exception" not in json.loads(text), text
