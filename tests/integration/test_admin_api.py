"""The operator API of PROTOCOL.md section 4, through the running app."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from honeymesh_hub import state
from honeymesh_hub.clock import to_datetime
from honeymesh_hub.entitlements import DEFAULT_LIMITS
from tests.conftest import Services
from tests.integration.foundation import (
    assert_problem,
    audit_end,
    audit_since,
    fetchval,
    send,
    shared_database,
    snapshot,
    tenant_decisions,
)
from tests.support import Hub


@pytest.fixture(scope="module")
def database_url(services: Services, template_db: str) -> Iterator[str]:
    yield from shared_database(services, template_db)


RESOLVERS = {
    "1.1.1.1/32",
    "1.0.0.1/32",
    "8.8.8.8/32",
    "8.8.4.4/32",
    "9.9.9.9/32",
    "149.112.112.112/32",
    "2606:4700:4700::1111/128",
    "2606:4700:4700::1001/128",
    "2001:4860:4860::8888/128",
    "2001:4860:4860::8844/128",
    "2620:fe::fe/128",
}


# -- tenants -------------------------------------------------------------------


async def test_tenant_create_get_and_patch(hub: Hub) -> None:
    created = await hub.call(
        "POST",
        "/v1/admin/tenants",
        {"name": "acme", "plan": "pro", "limits": {"pull_per_minute": 7}},
    )
    assert created.status == 201, created.body
    tenant_id = created.body["tenant_id"]
    assert uuid.UUID(tenant_id).version == 4
    assert created.body["status"] == "active"
    assert created.body["expires_at"] is None
    assert created.body["limits"] == {**DEFAULT_LIMITS["pro"], "pull_per_minute": 7}

    got = await hub.call("GET", f"/v1/admin/tenants/{tenant_id}")
    assert got.status == 200
    assert got.body == created.body

    patched = await hub.call(
        "PATCH",
        f"/v1/admin/tenants/{tenant_id}",
        {"plan": "enterprise", "status": "suspended", "expires_at": "2031-01-02T03:04:05Z"},
    )
    assert patched.status == 200, patched.body
    assert patched.body["plan"] == "enterprise"
    assert patched.body["status"] == "suspended"
    assert patched.body["expires_at"] == "2031-01-02T03:04:05Z"
    # limits not in the PATCH: the overrides stay, over the new plan's defaults
    assert patched.body["limits"] == {**DEFAULT_LIMITS["enterprise"], "pull_per_minute": 7}
    assert patched.body["features"] == ["mesh", "publish", "pull"]

    again = await hub.call(
        "PATCH",
        f"/v1/admin/tenants/{tenant_id}",
        {"status": "active", "expires_at": None, "limits": {"max_nodes": 3}},
    )
    assert again.status == 200, again.body
    assert again.body["status"] == "active"
    assert again.body["expires_at"] is None
    # A `limits` member overrides key by key; a key it does not give keeps the plan's value.
    assert again.body["limits"] == {**DEFAULT_LIMITS["enterprise"], "max_nodes": 3}
    assert (await hub.call("GET", f"/v1/admin/tenants/{tenant_id}")).body == again.body


async def test_community_tenant_has_no_features_and_pro_numbers(hub: Hub) -> None:
    reply = await hub.call("POST", "/v1/admin/tenants", {"name": "c", "plan": "community"})
    assert reply.status == 201
    assert reply.body["features"] == []
    assert reply.body["limits"] == DEFAULT_LIMITS["pro"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "plan": "gold"},
        {"name": "", "plan": "pro"},
        {"plan": "pro"},
        {"name": "x", "plan": "pro", "limits": {"max_nodes": -1}},
        {"name": "x", "plan": "pro", "limits": {"max_widgets": 1}},
        {"name": "x", "plan": "pro", "expires_at": "tomorrow"},
        {"name": "x", "plan": "pro", "expires_at": "2030-01-01T00:00:00"},
        {"name": "x", "plan": "pro", "status": "active"},
    ],
)
async def test_tenant_create_refuses_bad_bodies(hub: Hub, body: dict[str, object]) -> None:
    before = await snapshot(hub.database_url)
    reply = await hub.call("POST", "/v1/admin/tenants", body)
    problem = assert_problem(reply, 422, "validation_failed")
    assert problem["errors"][0]["pointer"].startswith("/")
    assert await snapshot(hub.database_url) == before


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, ""),
        ({"status": "deleted"}, "/status"),
        ({"plan": 3}, "/plan"),
        ({"limits": {"max_nodes": "9"}}, "/limits/max_nodes"),
        ({"expires_at": "2030-13-01T00:00:00Z"}, "/expires_at"),
        ({"name": "renamed"}, "/name"),
    ],
)
async def test_tenant_patch_refuses_bad_bodies(
    hub: Hub, body: dict[str, object], pointer: str
) -> None:
    tenant_id = await hub.tenant()
    before = await snapshot(hub.database_url)
    reply = await hub.call("PATCH", f"/v1/admin/tenants/{tenant_id}", body)
    problem = assert_problem(reply, 422, "validation_failed")
    assert problem["errors"][0]["pointer"] == pointer
    assert await snapshot(hub.database_url) == before


# -- enrollment tokens ------------------------------------------------------------


async def test_enrollment_tokens_create_list_revoke(hub: Hub) -> None:
    tenant_id = await hub.tenant()
    made = await hub.call(
        "POST",
        f"/v1/admin/tenants/{tenant_id}/enrollment-tokens",
        {"ttl_seconds": 600, "max_uses": 2},
    )
    assert made.status == 201, made.body
    assert set(made.body) == {"token_id", "token", "expires_at"}
    token = made.body["token"]
    assert token.startswith("hme_") and len(token) >= 4 + 43
    await hub.enroll(token=token)

    listed = await hub.call("GET", f"/v1/admin/tenants/{tenant_id}/enrollment-tokens")
    assert listed.status == 200
    assert token not in listed.raw.decode()
    (entry,) = listed.body["tokens"]
    assert "token" not in entry
    assert entry["token_id"] == made.body["token_id"]
    assert entry["uses_left"] == 1
    assert entry["expires_at"] == made.body["expires_at"]

    revoked = await hub.call("DELETE", f"/v1/admin/enrollment-tokens/{entry['token_id']}")
    assert revoked.status == 204
    assert revoked.raw == b""
    (entry,) = (await hub.call("GET", f"/v1/admin/tenants/{tenant_id}/enrollment-tokens")).body[
        "tokens"
    ]
    assert entry["uses_left"] == 0
    assert entry["revoked_at"] is not None


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"ttl_seconds": 7 * 86400 + 1}, "/ttl_seconds"),
        ({"ttl_seconds": 0}, "/ttl_seconds"),
        ({"max_uses": 0}, "/max_uses"),
        ({"max_uses": 101}, "/max_uses"),  # over pro's max_nodes (100)
        ({"max_uses": "1"}, "/max_uses"),
        ({"uses": 1}, "/uses"),
    ],
)
async def test_enrollment_token_refuses_bad_bodies(
    hub: Hub, body: dict[str, object], pointer: str
) -> None:
    tenant_id = await hub.tenant()
    before = await snapshot(hub.database_url)
    reply = await hub.call("POST", f"/v1/admin/tenants/{tenant_id}/enrollment-tokens", body)
    problem = assert_problem(reply, 422, "validation_failed")
    assert problem["errors"][0]["pointer"] == pointer
    assert await snapshot(hub.database_url) == before


async def test_enrollment_token_max_uses_follows_overridden_max_nodes(hub: Hub) -> None:
    tenant_id = await hub.tenant(limits={"max_nodes": 3})
    path = f"/v1/admin/tenants/{tenant_id}/enrollment-tokens"
    assert (await hub.call("POST", path, {"max_uses": 3})).status == 201
    assert_problem(await hub.call("POST", path, {"max_uses": 4}), 422, "validation_failed")


# -- admin and reviewer tokens ------------------------------------------------------


async def test_admin_token_create_use_and_revoke(hub: Hub) -> None:
    made = await hub.call("POST", "/v1/admin/tokens", {"role": "admin", "name": "ops"})
    assert made.status == 201, made.body
    assert set(made.body) == {"token_id", "token"}
    token = made.body["token"]
    assert token.startswith("hma_")
    assert (await hub.call("GET", "/v1/admin/nodes", token=token)).status == 200

    assert (await hub.call("DELETE", f"/v1/admin/tokens/{made.body['token_id']}")).status == 204
    assert_problem(await hub.call("GET", "/v1/admin/nodes", token=token), 401, "unauthorized")


async def test_reviewer_token_scopes(hub: Hub) -> None:
    tenant_id = await hub.tenant()
    mesh = await hub.call(
        "POST", "/v1/admin/tokens", {"role": "reviewer", "scope": "mesh", "name": "r"}
    )
    assert mesh.status == 201 and mesh.body["token"].startswith("hmr_")
    scoped = await hub.call(
        "POST", "/v1/admin/tokens", {"role": "reviewer", "scope": tenant_id, "name": "r"}
    )
    assert scoped.status == 201
    # A reviewer token is valid but not an admin's: 403, not 401.
    assert_problem(
        await hub.call("GET", "/v1/admin/nodes", token=mesh.body["token"]), 403, "forbidden"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"role": "reviewer", "name": "r"},
        {"role": "admin", "scope": "mesh", "name": "a"},
        {"role": "reviewer", "scope": "everything", "name": "r"},
        {"role": "reviewer", "scope": str(uuid.uuid4()), "name": "r"},
        {"role": "root", "name": "r"},
        {"role": "admin"},
        {"role": "admin", "name": "a", "expires_at": "2001-01-01T00:00:00Z"},
    ],
)
async def test_token_create_refuses(hub: Hub, body: dict[str, object]) -> None:
    before = await snapshot(hub.database_url)
    problem = assert_problem(
        await hub.call("POST", "/v1/admin/tokens", body), 422, "validation_failed"
    )
    assert problem["errors"][0]["pointer"] in {"/scope", "/role", "/name", "/expires_at"}
    assert await snapshot(hub.database_url) == before


async def test_expired_token_answers_401(hub: Hub) -> None:
    from honeymesh_hub.clock import rfc3339, to_datetime

    expires = rfc3339(to_datetime(hub.now() + 60))
    made = await hub.call(
        "POST", "/v1/admin/tokens", {"role": "admin", "name": "brief", "expires_at": expires}
    )
    assert made.status == 201, made.body
    token = made.body["token"]
    assert (await hub.call("GET", "/v1/admin/allowlist", token=token)).status == 200
    hub.clock.advance(61)
    assert_problem(await hub.call("GET", "/v1/admin/allowlist", token=token), 401, "unauthorized")


# -- nodes ---------------------------------------------------------------------------


async def test_nodes_list_revoke_and_trust(hub: Hub) -> None:
    tenant_a = await hub.tenant()
    tenant_b = await hub.tenant()
    a = await hub.enroll(tenant_a, name="a1")
    b = await hub.enroll(tenant_b, name="b1")

    everyone = await hub.call("GET", "/v1/admin/nodes")
    assert {n["node_id"] for n in everyone.body["nodes"]} >= {a.node_id, b.node_id}
    only_a = await hub.call("GET", f"/v1/admin/nodes?tenant_id={tenant_a}")
    (listed,) = only_a.body["nodes"]
    assert listed["node_id"] == a.node_id
    assert listed["name"] == "a1"
    assert listed["keyid"] == a.key.keyid
    assert listed["trusted"] is False
    assert listed["status"] == "active"

    trusted = await hub.call("PATCH", f"/v1/admin/nodes/{a.node_id}", {"trusted": True})
    assert trusted.status == 200, trusted.body
    assert trusted.body["trusted"] is True
    assert (await a.request("GET", "/v1/nodes/self")).body["trusted"] is True

    revoked = await hub.call("POST", f"/v1/admin/nodes/{a.node_id}/revoke")
    assert revoked.status == 200, revoked.body
    assert revoked.body["status"] == "revoked"
    assert revoked.body["revoked_at"] is not None
    # identity_cache_seconds is 0 in the tests, so "within 5 s" is at once here.
    for method, path in (("GET", "/v1/nodes/self"), ("GET", f"/v1/keys/{b.key.keyid}")):
        assert_problem(await a.request(method, path), 403, "node_revoked")
    assert (await b.request("GET", "/v1/nodes/self")).status == 200


async def test_revoke_with_reason_is_audited(hub: Hub) -> None:
    node = await hub.enroll()
    start = await audit_end(hub)
    reply = await hub.call(
        "POST", f"/v1/admin/nodes/{node.node_id}/revoke", {"reason": "stolen laptop"}
    )
    assert reply.status == 200
    (last,) = await audit_since(hub, start)
    assert last["action"] == "node.revoke"
    assert last["target"] == f"node:{node.node_id}"
    assert last["reason"] == "stolen laptop"


# -- allowlist -------------------------------------------------------------------------


async def test_allowlist_defaults_add_duplicate_delete(hub: Hub) -> None:
    listed = await hub.call("GET", "/v1/admin/allowlist")
    assert listed.status == 200
    assert {e["cidr"] for e in listed.body["entries"]} >= RESOLVERS

    added = await hub.call(
        "POST", "/v1/admin/allowlist", {"cidr": "198.51.100.0/24", "reason": "partner"}
    )
    assert added.status == 201, added.body
    assert set(added.body) == {"entry_id", "cidr", "reason", "created_at"}
    assert added.body["cidr"] == "198.51.100.0/24"
    assert added.body["reason"] == "partner"

    before = await snapshot(hub.database_url)
    duplicate = await hub.call(
        "POST", "/v1/admin/allowlist", {"cidr": "198.51.100.0/24", "reason": "again"}
    )
    assert_problem(duplicate, 409, "conflict")
    assert_problem(
        await hub.call("POST", "/v1/admin/allowlist", {"cidr": "8.8.8.8", "reason": "dns"}),
        409,
        "conflict",
    )
    assert await snapshot(hub.database_url) == before

    entry_id = added.body["entry_id"]
    assert (await hub.call("DELETE", f"/v1/admin/allowlist/{entry_id}")).status == 204
    assert_problem(await hub.call("DELETE", f"/v1/admin/allowlist/{entry_id}"), 404, "not_found")
    after = {e["cidr"] for e in (await hub.call("GET", "/v1/admin/allowlist")).body["entries"]}
    assert "198.51.100.0/24" not in after

    # An operator may delete the default entries too.
    google = next(e for e in listed.body["entries"] if e["cidr"] == "8.8.8.8/32")
    assert (await hub.call("DELETE", f"/v1/admin/allowlist/{google['entry_id']}")).status == 204


async def test_allowlist_add_retracting_decisions_of_300_tenants(hub: Hub) -> None:
    # One NOTIFY naming 300 tenant scopes would pass PostgreSQL's 8000-byte payload limit.
    now = to_datetime(hub.now())
    tenants = await tenant_decisions(
        hub.database_url, 300, "203.0.113.88", now, now + timedelta(hours=1)
    )
    reader = await hub.enroll(tenants[-1])
    snap = await reader.request("GET", "/v1/feed?limit=1000")
    assert (snap.status, snap.body["more"]) == (200, False), snap.body
    cursor = snap.body["cursor"]
    waiting = asyncio.create_task(reader.request("GET", f"/v1/feed?wait=30&cursor={cursor}"))
    await asyncio.wait_for(hub.client.app[state.NOTIFIER].until_waiting(1), 10)
    added = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "203.0.113.88", "reason": "x"})
    assert added.status == 201, added.body
    reply = await asyncio.wait_for(waiting, 1.0)  # PROTOCOL.md 8: woken within 1 s
    assert [r["reason"] for r in reply.body["removed"]] == ["retracted"]
    retracted = await fetchval(
        hub.database_url,
        "SELECT count(*) FROM candidates WHERE indicator_value = $1 AND state = 'retracted'",
        "203.0.113.88",
    )
    assert retracted == 300


@pytest.mark.parametrize("cidr", ["198.51.100.1/24", "not-an-ip", "300.1.1.1", "::ffff:1.2.3.4"])
async def test_allowlist_refuses_bad_ranges(hub: Hub, cidr: str) -> None:
    before = await snapshot(hub.database_url)
    reply = await hub.call("POST", "/v1/admin/allowlist", {"cidr": cidr, "reason": "r"})
    problem = assert_problem(reply, 422, "validation_failed")
    assert problem["errors"] == [{"pointer": "/cidr", "detail": problem["errors"][0]["detail"]}]
    assert await snapshot(hub.database_url) == before


# -- audit ----------------------------------------------------------------------------


async def test_every_admin_action_is_audited_without_token_values(hub: Hub) -> None:
    start = await audit_end(hub)
    tenant_id = await hub.tenant()
    patch = {"plan": "enterprise", "expires_at": "2031-05-06T07:08:09+02:00"}
    await hub.call("PATCH", f"/v1/admin/tenants/{tenant_id}", patch)
    enroll_token = await hub.call(
        "POST", f"/v1/admin/tenants/{tenant_id}/enrollment-tokens", {"max_uses": 2}
    )
    node = await hub.enroll(token=enroll_token.body["token"])
    await hub.call("DELETE", f"/v1/admin/enrollment-tokens/{enroll_token.body['token_id']}")
    api_token = await hub.call("POST", "/v1/admin/tokens", {"role": "admin", "name": "x"})
    await hub.call("DELETE", f"/v1/admin/tokens/{api_token.body['token_id']}")
    await hub.call("PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": True})
    await hub.call("PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": False})
    await hub.call("POST", f"/v1/admin/nodes/{node.node_id}/revoke")
    entry = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "192.0.2.0/24", "reason": "d"})
    await hub.call("DELETE", f"/v1/admin/allowlist/{entry.body['entry_id']}")

    page = await hub.call("GET", f"/v1/admin/audit?after={start}&limit=500")
    assert page.status == 200
    entries = page.body["entries"]
    assert "next" not in page.body
    assert [e["action"] for e in entries] == [
        "tenant.create",
        "tenant.update",
        "enrollment_token.create",
        "node.enroll",
        "enrollment_token.revoke",
        "token.create",
        "token.revoke",
        "node.trust",
        "node.untrust",
        "node.revoke",
        "allowlist.add",
        "allowlist.delete",
    ]
    for e in entries:
        assert e["actor"] and e["target"] and e["time"].endswith("Z")
    admin_actions = [e for e in entries if e["action"] != "node.enroll"]
    assert {e["actor"] for e in admin_actions} == {"admin:root"}
    assert entries[0]["target"] == f"tenant:{tenant_id}"
    # Times in details are RFC 3339 UTC too.
    assert entries[1]["details"] == {"plan": "enterprise", "expires_at": "2031-05-06T05:08:09Z"}
    assert entries[3]["actor"] == f"node:{node.node_id}"
    text = page.raw.decode()
    for secret in (enroll_token.body["token"], api_token.body["token"], hub.admin_token):
        assert secret not in text
    assert "hme_" not in text and "hma_" not in text
    # The log is append-only in the database too.
    with pytest.raises(Exception, match="append-only"):
        await fetchval(hub.database_url, "DELETE FROM audit_log")


async def test_audit_paging(hub: Hub) -> None:
    start = await audit_end(hub)
    for _ in range(5):
        await hub.tenant()
    full = (await hub.call("GET", f"/v1/admin/audit?after={start}")).body
    assert "next" not in full
    seqs = [e["seq"] for e in full["entries"]]
    assert len(seqs) == 5 and seqs == sorted(seqs) and seqs[0] > start

    pages: list[list[int]] = []
    after = str(start)
    while True:
        page = await hub.call("GET", f"/v1/admin/audit?limit=2&after={after}")
        assert page.status == 200
        pages.append([e["seq"] for e in page.body["entries"]])
        if "next" not in page.body:
            break
        after = page.body["next"]
        # `next` is the value to pass as `after`, URL-safe (PROTOCOL.md section 2).
        assert isinstance(after, str) and after.isdigit()
        assert after == str(pages[-1][-1])
    assert pages == [seqs[0:2], seqs[2:4], seqs[4:5]]
    # `next` only when more follow: not when a page ends exactly at the last entry.
    assert "next" not in (await hub.call("GET", f"/v1/admin/audit?after={start}&limit=5")).body
    assert (await hub.call("GET", f"/v1/admin/audit?after={start}&limit=4")).body["next"] == str(
        seqs[3]
    )
    last = await hub.call("GET", f"/v1/admin/audit?after={seqs[-1]}")
    assert last.body == {"entries": []}


async def test_audit_default_page_is_100_oldest_first(hub: Hub) -> None:
    total = await fetchval(hub.database_url, "SELECT count(*) FROM audit_log")
    while total <= 100:
        await hub.tenant()
        total += 1
    page = (await hub.call("GET", "/v1/admin/audit")).body
    seqs = [e["seq"] for e in page["entries"]]
    first = await fetchval(hub.database_url, "SELECT min(seq) FROM audit_log")
    assert len(seqs) == 100 and seqs == sorted(seqs) and seqs[0] == first
    assert page["next"] == str(seqs[-1])


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "limit=-1", "limit=abc", "limit=1.5", "after=x", "after=-3"]
)
async def test_audit_refuses_bad_paging(hub: Hub, query: str) -> None:
    problem = assert_problem(
        await hub.call("GET", f"/v1/admin/audit?{query}"), 422, "validation_failed"
    )
    assert problem["errors"][0]["pointer"] == "/query/" + query.split("=")[0]


async def test_audit_limit_bounds_accepted(hub: Hub) -> None:
    for limit in (1, 500):
        reply = await hub.call("GET", f"/v1/admin/audit?limit={limit}")
        assert reply.status == 200
        assert len(reply.body["entries"]) <= limit


async def test_reads_need_a_token(hub: Hub) -> None:
    reply = await send(hub, "GET", "/v1/admin/audit")
    assert_problem(reply, 401, "unauthorized")
