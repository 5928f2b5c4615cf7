"""Enrollment (PROTOCOL.md section 5): proof of possession, tokens spent atomically,
tenant state and node limits; a refused enrollment spends no use."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Iterator

import pytest

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_hub.clock import ManualClock, rfc3339, to_datetime
from honeymesh_hub.config import Config
from tests.conftest import Services
from tests.integration.foundation import (
    AiohttpClient,
    assert_problem,
    audit_end,
    audit_since,
    enroll_reply,
    fetchval,
    rotation_body,
    shared_database,
    snapshot,
    start_hub,
)
from tests.support import Hub, Node


@pytest.fixture(scope="module")
def database_url(services: Services, template_db: str) -> Iterator[str]:
    yield from shared_database(services, template_db)


async def _uses_left(hub: Hub, tenant_id: str) -> list[int]:
    reply = await hub.call("GET", f"/v1/admin/tenants/{tenant_id}/enrollment-tokens")
    return [t["uses_left"] for t in reply.body["tokens"]]


async def test_enroll_answers_ids_and_is_audited(hub: Hub) -> None:
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id)
    start = await audit_end(hub)
    node, reply = await enroll_reply(hub, token, name="edge-1")
    assert reply.status == 201, reply.body
    assert set(reply.body) == {"node_id", "tenant_id", "keyid"}
    assert reply.body["tenant_id"] == tenant_id
    assert reply.body["keyid"] == node.key.keyid
    me = await node.request("GET", "/v1/nodes/self")
    assert me.status == 200
    assert me.body == {
        "node_id": node.node_id,
        "tenant_id": tenant_id,
        "name": "edge-1",
        "keyid": node.key.keyid,
        "trusted": False,
        "plan": "pro",
        "features": ["mesh", "publish", "pull"],
        "limits": me.body["limits"],
    }
    assert me.body["limits"]["max_nodes"] == 100
    (last,) = await audit_since(hub, start)
    assert last["action"] == "node.enroll"
    assert last["target"] == f"node:{node.node_id}"
    assert token not in str(last)


async def test_keyid_must_be_the_enrolled_keys_id(hub: Hub) -> None:
    """Proof of possession: signed by one key, enrolling another, is invalid_signature."""
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id)
    signer = Node(hub, NodeKey.generate())
    other = NodeKey.generate()
    before = await snapshot(hub.database_url)
    reply = await signer.request(
        "POST", "/v1/nodes/enroll", {"token": token, "public_key": other.public_b64, "name": "n"}
    )
    assert_problem(reply, 401, "invalid_signature")
    assert await snapshot(hub.database_url) == before
    assert await _uses_left(hub, tenant_id) == [1]


async def test_enroll_with_a_bad_signature_of_the_right_key(hub: Hub) -> None:
    """keyid right, signature by another key: invalid_signature, no use spent."""
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id)
    node = Node(hub, NodeKey.generate())
    body = {"token": token, "public_key": node.key.public_b64, "name": "n"}
    forged = await node.request(
        "POST",
        "/v1/nodes/enroll",
        body,
        headers={"Signature": "hm=:" + "A" * 86 + "==:"},
    )
    assert_problem(forged, 401, "invalid_signature")
    assert await _uses_left(hub, tenant_id) == [1]


@pytest.mark.parametrize("case", ["unknown", "spent", "expired", "revoked", "other-kind"])
async def test_unusable_tokens_are_forbidden_and_spend_nothing(hub: Hub, case: str) -> None:
    tenant_id = await hub.tenant()
    made = await hub.call(
        "POST",
        f"/v1/admin/tenants/{tenant_id}/enrollment-tokens",
        {"ttl_seconds": 60, "max_uses": 1},
    )
    token = made.body["token"]
    if case == "unknown":
        token = "hme_" + "x" * 43
    elif case == "spent":
        await hub.enroll(token=token)
    elif case == "expired":
        hub.clock.advance(60)
    elif case == "revoked":
        await hub.call("DELETE", f"/v1/admin/enrollment-tokens/{made.body['token_id']}")
    else:
        token = hub.admin_token
    before = await snapshot(hub.database_url)
    _, reply = await enroll_reply(hub, token)
    assert_problem(reply, 403, "forbidden")
    assert await snapshot(hub.database_url) == before


async def test_token_just_before_expiry_still_works(hub: Hub) -> None:
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id, ttl=60)
    hub.clock.advance(59)
    _, reply = await enroll_reply(hub, token)
    assert reply.status == 201, reply.body


async def test_known_public_key_is_a_conflict_and_spends_nothing(hub: Hub) -> None:
    tenant_id = await hub.tenant()
    first = await hub.enroll(tenant_id)
    token = await hub.enrollment_token(tenant_id, max_uses=2)
    before = await snapshot(hub.database_url)
    _, reply = await enroll_reply(hub, token, key=first.key)
    assert_problem(reply, 409, "conflict")
    assert await snapshot(hub.database_url) == before
    assert sorted(await _uses_left(hub, tenant_id)) == [0, 2]


async def test_rotated_out_public_key_is_still_known(hub: Hub) -> None:
    node = await hub.enroll()
    old = node.key
    new = NodeKey.generate()
    assert (
        await node.request("POST", "/v1/nodes/self/keys", rotation_body(node, new))
    ).status == 200
    token = await hub.enrollment_token(await hub.tenant())
    _, reply = await enroll_reply(hub, token, key=old)
    assert_problem(reply, 409, "conflict")


@pytest.mark.parametrize(
    ("change", "code"),
    [({"status": "suspended"}, "tenant_suspended"), ("expire", "entitlement_expired")],
)
async def test_inactive_tenants_cannot_enroll(hub: Hub, change: object, code: str) -> None:
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id, ttl=3600)
    if change == "expire":
        soon = rfc3339(to_datetime(hub.now() + 30))
        patched = await hub.call("PATCH", f"/v1/admin/tenants/{tenant_id}", {"expires_at": soon})
        assert patched.status == 200
        hub.clock.advance(31)
    else:
        await hub.call("PATCH", f"/v1/admin/tenants/{tenant_id}", change)
    before = await snapshot(hub.database_url)
    _, reply = await enroll_reply(hub, token)
    assert_problem(reply, 403, code)
    assert await snapshot(hub.database_url) == before
    assert await _uses_left(hub, tenant_id) == [1]

    # Reactivated, the same token works: the refusal spent nothing.
    await hub.call(
        "PATCH", f"/v1/admin/tenants/{tenant_id}", {"status": "active", "expires_at": None}
    )
    _, reply = await enroll_reply(hub, token)
    assert reply.status == 201, reply.body


async def test_community_tenant_may_enroll(hub: Hub) -> None:
    tenant_id = await hub.tenant("community")
    node = await hub.enroll(tenant_id)
    me = await node.request("GET", "/v1/nodes/self")
    assert me.status == 200
    assert me.body["plan"] == "community"
    assert me.body["features"] == []


async def test_node_limit(hub: Hub) -> None:
    tenant_id = await hub.tenant(limits={"max_nodes": 2})
    token = await hub.enrollment_token(tenant_id, max_uses=2)
    spare = await hub.enrollment_token(tenant_id, max_uses=2)
    first = await hub.enroll(token=token)
    await hub.enroll(token=spare)
    before = await snapshot(hub.database_url)
    _, reply = await enroll_reply(hub, token)
    assert_problem(reply, 403, "node_limit_reached")
    assert await snapshot(hub.database_url) == before
    assert await _uses_left(hub, tenant_id) == [1, 1]

    # A revoked node no longer counts against max_nodes.
    await hub.call("POST", f"/v1/admin/nodes/{first.node_id}/revoke")
    _, reply = await enroll_reply(hub, token)
    assert reply.status == 201, reply.body


@pytest.fixture
async def proxied_hub(aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock) -> Hub:
    """The test client as a trusted proxy: racing enrollments come from many addresses,
    so the per-address limit of 10 a minute (PROTOCOL.md section 9) stays out of it."""
    config = dataclasses.replace(hub_config, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))
    return await start_hub(aiohttp_client, config, clock)


async def test_racing_enrollments_spend_a_token_exactly_max_uses_times(proxied_hub: Hub) -> None:
    hub = proxied_hub
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id, max_uses=5)
    replies = await asyncio.gather(
        *(
            enroll_reply(hub, token, name=f"n{i}", headers={"X-Forwarded-For": f"203.0.113.{i}"})
            for i in range(12)
        )
    )
    statuses = sorted(reply.status for _, reply in replies)
    assert statuses == [201] * 5 + [403] * 7
    for _, reply in replies:
        if reply.status == 403:
            assert_problem(reply, 403, "forbidden")
    count = await fetchval(
        hub.database_url, "SELECT count(*) FROM nodes WHERE tenant_id = $1::uuid", tenant_id
    )
    assert count == 5
    assert await _uses_left(hub, tenant_id) == [0]


async def test_racing_enrollments_never_pass_max_nodes(proxied_hub: Hub) -> None:
    hub = proxied_hub
    tenant_id = await hub.tenant(limits={"max_nodes": 3})
    tokens = [await hub.enrollment_token(tenant_id, max_uses=3) for _ in range(3)]
    replies = await asyncio.gather(
        *(
            enroll_reply(hub, tokens[i % 3], headers={"X-Forwarded-For": f"203.0.113.{i}"})
            for i in range(9)
        )
    )
    statuses = sorted(reply.status for _, reply in replies)
    assert statuses == [201] * 3 + [403] * 6
    assert {r.code for _, r in replies if r.status == 403} == {"node_limit_reached"}
    count = await fetchval(
        hub.database_url, "SELECT count(*) FROM nodes WHERE tenant_id = $1::uuid", tenant_id
    )
    assert count == 3
    assert sum(await _uses_left(hub, tenant_id)) == 9 - 3


async def test_replayed_enrollment_is_refused(hub: Hub) -> None:
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id, max_uses=2)
    node = Node(hub, NodeKey.generate())
    body = {"token": token, "public_key": node.key.public_b64, "name": "n"}
    nonce = "enrollment-nonce-0001"
    first = await node.request("POST", "/v1/nodes/enroll", body, nonce=nonce)
    assert first.status == 201
    again = await node.request("POST", "/v1/nodes/enroll", body, nonce=nonce)
    assert_problem(again, 401, "replayed_request")
    assert await _uses_left(hub, tenant_id) == [1]
