"""GET /v1/blocklist (PROTOCOL.md 13.2) against the real hub: a reader key's active
decisions in every format, ETag and 304, the family filter, bad queries and keys."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from honeymesh_client.protocol.blocklists import FORMATS
from tests.integration.foundation import assert_problem
from tests.support import Hub, Reply, approve, trusted


async def _reader_key(hub: Hub, tenant: str) -> dict[str, Any]:
    reply = await hub.call("POST", f"/v1/admin/tenants/{tenant}/reader-keys", {"name": "fw"})
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


async def _get(hub: Hub, query: str, headers: dict[str, str]) -> Reply:
    resp = await hub.client.get(f"/v1/blocklist{query}", headers=headers)
    raw = await resp.read()
    return Reply(resp.status, resp.headers, None, raw)


@pytest.fixture
async def world(hub: Hub) -> dict[str, Any]:
    ours, other = await hub.tenant(), await hub.tenant()
    source = await trusted(hub, ours)
    stranger = await trusted(hub, other)
    await approve(source, "198.51.100.7")
    await approve(source, "2001:db8::7")
    await approve(source, "203.0.113.9", share="tenant")
    await approve(stranger, "203.0.113.66", share="tenant")  # another tenant's own
    made, other_made = await _reader_key(hub, ours), await _reader_key(hub, other)
    return {"key": made["key"], "key_id": made["key_id"], "other_key": other_made["key"]}


async def test_plain_lists_what_a_node_of_the_tenant_sees(hub: Hub, world: dict[str, Any]) -> None:
    reply = await _get(hub, "?format=plain", {"X-Api-Key": world["key"]})
    assert reply.status == 200, reply.raw
    assert sorted(reply.raw.decode().split()) == ["198.51.100.7", "2001:db8::7", "203.0.113.9"]
    assert reply.headers["Cache-Control"] == "no-cache"
    assert reply.headers["ETag"].startswith('"')
    other = await _get(hub, "?format=plain", {"Authorization": f"Bearer {world['other_key']}"})
    assert "203.0.113.9" not in other.raw.decode()
    assert "203.0.113.66" in other.raw.decode()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_every_format_answers_with_basic_auth(
    hub: Hub, world: dict[str, Any], fmt: str
) -> None:
    basic = base64.b64encode(f"any-user:{world['key']}".encode()).decode()
    reply = await _get(hub, f"?format={fmt}", {"Authorization": f"Basic {basic}"})
    assert reply.status == 200, reply.raw
    assert "198.51.100.7" in reply.raw.decode()


async def test_etag_and_304_until_the_list_changes(hub: Hub, world: dict[str, Any]) -> None:
    key = {"X-Api-Key": world["key"]}
    first = await _get(hub, "?format=plain", key)
    tag = first.headers["ETag"]
    again = await _get(hub, "?format=plain", {**key, "If-None-Match": tag})
    assert (again.status, again.raw) == (304, b"")
    assert again.headers["ETag"] == tag
    other_format = await _get(hub, "?format=csv", {**key, "If-None-Match": tag})
    assert other_format.status == 200
    reply = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "198.51.100.7", "reason": "r"})
    assert reply.status == 201
    changed = await _get(hub, "?format=plain", {**key, "If-None-Match": tag})
    assert changed.status == 200
    assert "198.51.100.7" not in changed.raw.decode()
    assert changed.headers["ETag"] != tag


@pytest.mark.parametrize(("family", "kept"), [("4", "198.51.100.7"), ("6", "2001:db8::7")])
async def test_family_keeps_one(hub: Hub, world: dict[str, Any], family: str, kept: str) -> None:
    reply = await _get(hub, f"?format=plain&family={family}", {"X-Api-Key": world["key"]})
    listed = reply.raw.decode().split()
    assert kept in listed
    assert all(("." in v) == (family == "4") for v in listed)


@pytest.mark.parametrize(
    ("query", "pointer"),
    [
        ("", "/query/format"),
        ("?format=pf", "/query/format"),
        ("?format=plain&family=5", "/query/family"),
        ("?format=plain&family=", "/query/family"),
        ("?format=mikrotik&listname=a%20b", "/query/listname"),
        ("?format=mikrotik&listname=" + "x" * 64, "/query/listname"),
    ],
)
async def test_bad_queries_answer_422(
    hub: Hub, world: dict[str, Any], query: str, pointer: str
) -> None:
    reply = await hub.client.get(f"/v1/blocklist{query}", headers={"X-Api-Key": world["key"]})
    assert reply.status == 422
    body = await reply.json()
    assert body["code"] == "validation_failed"
    assert body["errors"][0]["pointer"] == pointer


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Api-Key": "hmk_" + "A" * 43},
        {"X-Api-Key": "not-a-key"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer hma_" + "A" * 43},
    ],
)
async def test_missing_or_bad_keys_answer_401(hub: Hub, headers: dict[str, str]) -> None:
    reply = await hub.client.get("/v1/blocklist?format=plain", headers=headers)
    body = await reply.json()
    assert reply.status == 401, body
    assert body["code"] == "unauthorized"


async def test_a_revoked_key_reads_nothing(hub: Hub, world: dict[str, Any]) -> None:
    key_id = world["key_id"]
    assert (await hub.call("DELETE", f"/v1/admin/reader-keys/{key_id}")).status == 204
    reply = await _get(hub, "?format=plain", {"X-Api-Key": world["key"]})
    assert reply.status == 401
    assert json.loads(reply.raw)["code"] == "unauthorized"


async def test_a_node_signature_is_no_reader_key(hub: Hub, world: dict[str, Any]) -> None:
    node = await hub.enroll()
    reply = await node.request("GET", "/v1/blocklist?format=plain")
    assert_problem(reply, 401, "unauthorized")
