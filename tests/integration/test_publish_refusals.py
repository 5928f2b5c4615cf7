"""Every refusal of PROTOCOL.md section 6, each with its code and JSON pointer."""

from __future__ import annotations

import base64
import json
from typing import Any

import asyncpg
import pytest

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_hub import state
from tests.support import Hub, Node, envelope, publish, signal


async def _count(hub: Hub, table: str) -> int:
    conn = await asyncpg.connect(hub.database_url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
    finally:
        await conn.close()


def _payload(node: Node, **changes: Any) -> dict[str, Any]:
    body = signal(node)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


PAYLOAD_CASES = [
    ({"v": 2}, "validation_failed", "/v"),
    ({"id": "not-a-uuid"}, "validation_failed", "/id"),
    ({"confidence": 101}, "validation_failed", "/confidence"),
    ({"confidence": "80"}, "validation_failed", "/confidence"),
    ({"ttl_seconds": 299}, "validation_failed", "/ttl_seconds"),
    ({"scenario": "Redis/UPPER"}, "validation_failed", "/scenario"),
    ({"share": "world"}, "validation_failed", "/share"),
    ({"mode": None}, "validation_failed", "/mode"),
    ({"extra": 1}, "validation_failed", "/extra"),
    ({"labels": {"k": "v"}}, "validation_failed", "/labels"),
    ({"evidence": {"events": 3, "notes": "internal"}}, "validation_failed", "/evidence/notes"),
    ({"indicator": {"type": "ip", "value": "192.0.2.01"}}, "validation_failed", "/indicator/value"),
    (
        {"indicator": {"type": "ip", "value": "fe80::1%eth0"}},
        "validation_failed",
        "/indicator/value",
    ),
    (
        {"indicator": {"type": "cidr", "value": "192.0.2.1/24"}},
        "validation_failed",
        "/indicator/value",
    ),
    ({"indicator": {"type": "cidr", "value": "8.0.0.0/8"}}, "too_broad", "/indicator/value"),
    ({"indicator": {"type": "cidr", "value": "2001:db8::/31"}}, "too_broad", "/indicator/value"),
    ({"indicator": {"type": "ip", "value": "10.1.2.3"}}, "reserved_range", "/indicator/value"),
    (
        {"indicator": {"type": "ip", "value": "64:ff9b::a00:1"}},
        "reserved_range",
        "/indicator/value",
    ),
    (
        {"indicator": {"type": "cidr", "value": "2002:a00:1::/48"}},
        "reserved_range",
        "/indicator/value",
    ),
    (
        {"indicator": {"type": "ip", "value": "::ffff:10.0.0.1"}},
        "reserved_range",
        "/indicator/value",
    ),
    ({"observed_at": "2020-01-01T00:00:00Z"}, "validation_failed", "/observed_at"),
]


@pytest.mark.parametrize(("changes", "code", "pointer"), PAYLOAD_CASES)
async def test_payload_refusals(hub: Hub, changes: dict[str, Any], code: str, pointer: str) -> None:
    node = await hub.enroll()
    reply = await publish(node, _payload(node, **changes))
    assert reply.status == 202, reply.body
    [result] = reply.body["results"]
    assert result["status"] == "rejected"
    assert result["error"]["code"] == code
    assert result["error"]["pointer"] == "/envelopes/0/payload" + pointer
    assert await _count(hub, "signals") == 0


async def test_node_id_must_be_the_caller(hub: Hub) -> None:
    node, other = await hub.enroll(), await hub.enroll()
    reply = await publish(node, _payload(node, node_id=other.node_id))
    assert reply.body["results"][0]["error"]["pointer"] == "/envelopes/0/payload/node_id"


async def test_documentation_ranges_are_accepted(hub: Hub) -> None:
    node = await hub.enroll()
    values = [
        {"type": "cidr", "value": "192.0.2.0/24"},
        {"type": "ip", "value": "198.51.100.1"},
        {"type": "cidr", "value": "2001:db8::/32"},
    ]
    reply = await publish(node, *(_payload(node, indicator=v) for v in values))
    assert [r["status"] for r in reply.body["results"]] == ["accepted"] * 3


async def test_envelope_refusals_in_order(hub: Hub) -> None:
    node = await hub.enroll()
    stranger = await hub.enroll()
    good = envelope(node, signal(node))
    two_sigs = dict(good, signatures=good["signatures"] * 2)
    foreign = envelope(node, signal(node), key=stranger.key)
    bad_sig = dict(
        good, signatures=[{"keyid": node.key.keyid, "sig": base64.b64encode(b"x" * 64).decode()}]
    )
    wrong_type = dict(good, payloadType="text/plain")
    unknown_key = envelope(node, signal(node), key=NodeKey.generate())
    batch = [good, two_sigs, foreign, bad_sig, wrong_type, unknown_key, "nope", good]
    reply = await node.request("POST", "/v1/signals", {"envelopes": batch})
    assert reply.status == 202
    results = reply.body["results"]
    assert [r["status"] for r in results] == ["accepted"] + ["rejected"] * 6 + ["duplicate"]
    assert [r["error"]["code"] for r in results[1:7]] == [
        "validation_failed",
        "foreign_key",
        "invalid_envelope_signature",
        "validation_failed",
        "foreign_key",
        "validation_failed",
    ]
    assert results[1]["error"]["pointer"].startswith("/envelopes/1/signatures")
    assert results[2]["error"]["pointer"] == "/envelopes/2/signatures/0/keyid"
    assert results[6]["error"]["pointer"] == "/envelopes/6"
    assert await _count(hub, "signals") == 1


async def test_duplicate_comes_before_payload_checks(hub: Hub) -> None:
    node = await hub.enroll()
    payload = signal(node)
    assert (await publish(node, payload)).body["results"][0]["status"] == "accepted"
    changed = dict(payload, confidence=500)
    reply = await publish(node, changed)
    assert reply.body["results"][0]["status"] == "duplicate"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{", 400, "invalid_json"),
        (b'{"envelopes": [], "envelopes": []}', 400, "invalid_json"),
        (b'{"envelopes": []}', 422, "validation_failed"),
        (b'{"envelopes": {}}', 422, "validation_failed"),
        (b'{"envelopes": [1], "more": 1}', 422, "validation_failed"),
        (b"[]", 422, "validation_failed"),
    ],
)
async def test_bad_publish_bodies(hub: Hub, body: bytes, status: int, code: str) -> None:
    node = await hub.enroll()
    reply = await node.request("POST", "/v1/signals", raw=body)
    assert (reply.status, reply.code) == (status, code)
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    assert await _count(hub, "signals") == 0


async def test_wrong_media_type(hub: Hub) -> None:
    node = await hub.enroll()
    body = json.dumps({"envelopes": [envelope(node, signal(node))]}).encode()
    reply = await node.request(
        "POST", "/v1/signals", raw=body, headers={"Content-Type": "text/plain"}
    )
    assert (reply.status, reply.code) == (415, "unsupported_media_type")


async def test_batch_over_max_batch_refused_whole(hub: Hub) -> None:
    tenant = await hub.tenant(limits={"max_batch": 2})
    node = await hub.enroll(tenant)
    reply = await publish(node, *(signal(node, f"198.51.100.{i}") for i in range(3)))
    assert (reply.status, reply.code) == (422, "validation_failed")
    assert await _count(hub, "signals") == 0


async def test_community_tenant_is_not_entitled(hub: Hub) -> None:
    node = await hub.enroll(await hub.tenant("community"))
    reply = await publish(node, signal(node))
    assert (reply.status, reply.code) == (403, "not_entitled")


async def test_publish_rate_limit_refuses_batch_whole(hub: Hub) -> None:
    tenant = await hub.tenant(limits={"publish_per_minute": 3})
    node = await hub.enroll(tenant)
    ok = await publish(node, *(signal(node, f"198.51.100.{i}") for i in range(2)))
    assert ok.status == 202
    assert ok.headers["RateLimit"].startswith('"publish";r=1;')
    refused = await publish(node, *(signal(node, f"198.51.100.{i}") for i in range(2, 4)))
    assert (refused.status, refused.code) == (429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Policy"] == '"publish";q=3;w=60'
    assert await _count(hub, "signals") == 2


async def test_new_candidates_per_day_refuses_alone(hub: Hub) -> None:
    tenant = await hub.tenant(limits={"new_candidates_per_day": 1})
    node = await hub.enroll(tenant)
    first = await publish(node, signal(node, "198.51.100.1"))
    assert first.body["results"][0]["status"] == "accepted"
    reply = await publish(node, signal(node, "198.51.100.1"), signal(node, "198.51.100.2"))
    statuses = [(r["status"], r.get("error", {}).get("code")) for r in reply.body["results"]]
    assert statuses == [("accepted", None), ("rejected", "rate_limited")]
    assert reply.body["results"][1]["error"]["pointer"] == "/envelopes/1/payload/indicator"


@pytest.mark.parametrize(
    "keyid",
    [
        "x" * (1000 * 1000),  # a keyid near the body limit
        "A" * 64,  # uppercase hex
        "0" * 63,
        "0" * 65,
        "g" * 64,
        "",
        "é" * 64,
    ],
    ids=["huge", "uppercase", "short", "long", "not-hex", "empty", "non-ascii"],
)
async def test_malformed_keyids_are_foreign_without_a_lookup(hub: Hub, keyid: str) -> None:
    """PROTOCOL.md 6 r2: no lookup, so nothing a sender makes up grows the key cache."""
    node = await hub.enroll()
    env = envelope(node, signal(node))
    env["signatures"][0]["keyid"] = keyid
    directory = hub.client.app[state.DIRECTORY]
    reply = await node.request("POST", "/v1/signals", {"envelopes": [env]})
    assert reply.status == 202, reply.body
    [result] = reply.body["results"]
    assert result["error"]["code"] == "foreign_key"
    assert result["error"]["pointer"] == "/envelopes/0/signatures/0/keyid"
    assert keyid not in directory
    assert len(directory) == 1  # the caller's own key, looked up for its signature
    assert await _count(hub, "signals") == 0


async def test_a_keyid_with_u0000_refuses_the_body_as_invalid_json(hub: Hub) -> None:
    node = await hub.enroll()
    env = envelope(node, signal(node))
    env["signatures"][0]["keyid"] = "a\u0000b"
    reply = await node.request("POST", "/v1/signals", {"envelopes": [env]})
    assert (reply.status, reply.code) == (400, "invalid_json")
    assert await _count(hub, "signals") == 0


async def test_u0000_in_a_payload_is_validation_failed(hub: Hub) -> None:
    node = await hub.enroll()
    good = signal(node, "198.51.100.7")
    bad = dict(signal(node, "198.51.100.8"), scenario="ssh/brute\u0000force")
    reply = await publish(node, good, bad)
    assert reply.status == 202, reply.body
    first, second = reply.body["results"]
    assert first["status"] == "accepted"
    assert second["status"] == "rejected"
    assert second["error"]["code"] == "validation_failed"
    assert "U+0000" in second["error"]["detail"]
    assert await _count(hub, "signals") == 1
