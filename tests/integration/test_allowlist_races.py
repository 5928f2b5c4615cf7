"""The allowlist always wins (PROTOCOL.md 4 and 7 r2): over reviewers, over publishes
racing an allowlist add, and for the hub's own addresses listed at start."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from honeymesh_hub import state as app_state
from honeymesh_hub.app import seed_public_addresses
from honeymesh_hub.clock import to_datetime
from honeymesh_hub.services import allowlist, decisions
from honeymesh_hub.services.expiry import sweep
from honeymesh_hub.store import allowlist as allowlist_store
from tests.support import Hub, Node, publish, signal


async def _candidate(node: Node, value: str, **overrides: Any) -> str:
    reply = await publish(node, signal(node, value, **overrides))
    assert reply.status == 202, reply.body
    [result] = reply.body["results"]
    assert result["status"] == "accepted", result
    return str(result["candidate_id"])


async def _decide(hub: Hub, token: str, cid: str, action: str) -> dict[str, Any]:
    decision: dict[str, Any] = {"candidate_id": cid, "action": action, "reason": "r"}
    if action == "approve":
        decision["ttl_seconds"] = 300
    reply = await hub.call("POST", "/v1/review/decisions", {"decisions": [decision]}, token=token)
    assert reply.status == 200, reply.body
    result: dict[str, Any] = reply.body["results"][0]
    return result


async def _state(hub: Hub, cid: str) -> str:
    conn = await asyncpg.connect(hub.database_url)
    try:
        return str(await conn.fetchval("SELECT state FROM candidates WHERE id = $1::uuid", cid))
    finally:
        await conn.close()


async def _allowlist(hub: Hub, cidr: str) -> None:
    reply = await hub.call("POST", "/v1/admin/allowlist", {"cidr": cidr, "reason": "ours"})
    assert reply.status == 201, reply.body


@pytest.mark.parametrize("start", ["pending", "approved", "expired", "retracted"])
async def test_a_reviewer_cannot_approve_an_allowlisted_candidate(hub: Hub, start: str) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    cid = await _candidate(node, "203.0.113.40")
    if start != "pending":
        assert (await _decide(hub, rev, cid, "approve"))["status"] == "applied"
    if start == "retracted":
        await _decide(hub, rev, cid, "retract")
    if start == "expired":
        hub.clock.advance(301)
        await sweep(hub.client.app[app_state.POOL], to_datetime(hub.now()))
    await _allowlist(hub, "203.0.113.0/24")
    before = await _state(hub, cid)
    assert before in ("rejected", "retracted", "expired")
    result = await _decide(hub, rev, cid, "approve")
    assert result["status"] == "refused"
    assert result["error"]["code"] == "conflict"
    assert "allowlist" in result["error"]["detail"]
    assert await _state(hub, cid) == before


async def _wait_until_blocked(database_url: str) -> None:
    """Until some session waits on a lock (pg_stat_activity), polled as an event."""
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(500):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )
            if waiting:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("nothing ever waited on a lock")
    finally:
        await conn.close()


async def test_an_approve_racing_an_allowlist_add_is_a_conflict(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    cid = await _candidate(node, "203.0.113.41")
    await _decide(hub, rev, cid, "approve")
    await _decide(hub, rev, cid, "retract")
    net = allowlist.parse_cidr("203.0.113.41")
    now = to_datetime(hub.now())
    conn = await asyncpg.connect(hub.database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await allowlist_store.insert(conn, entry_id=uuid.uuid4(), cidr=net, reason="r", now=now)
        await decisions.apply_allowlist(conn, net, now, "admin:test")  # locks the retracted one
        approve = asyncio.ensure_future(_decide(hub, rev, cid, "approve"))
        await _wait_until_blocked(hub.database_url)
        await tx.commit()
    finally:
        await conn.close()
    result = await approve
    assert (result["status"], result["error"]["code"]) == ("refused", "conflict")
    assert await _state(hub, cid) == "retracted"


async def test_a_candidate_opened_unseen_by_an_allowlist_add_is_rejected(hub: Hub) -> None:
    """A publish whose snapshot predates the entry opens a pending candidate the entry's
    own transaction cannot see; the add's second pass rejects it."""
    node = await hub.enroll()
    pool = hub.client.app[app_state.POOL]
    now = to_datetime(hub.now())
    publisher = await asyncpg.connect(hub.database_url)
    try:
        tx = publisher.transaction()
        await tx.start()
        cid = await publisher.fetchval(
            "INSERT INTO candidates (id, indicator_type, indicator_value, network, scope,"
            " scope_key, first_seen, last_seen, created_at, updated_at)"
            " VALUES (gen_random_uuid(), 'ip', '203.0.113.42', '203.0.113.42/32', 'mesh',"
            " 'mesh', $1, $1, $1, $1) RETURNING id",
            now,
        )
        adding = asyncio.ensure_future(
            allowlist.allowlist(
                pool, allowlist.parse_cidr("203.0.113.0/24"), "ours", now, "admin:t"
            )
        )
        await _wait_for_first_pass(hub.database_url)
        assert not adding.done()  # waiting for the older publisher
        await tx.commit()
    finally:
        await publisher.close()
    assert await adding is not None
    assert await _state(hub, str(cid)) == "rejected"
    del node


async def _wait_for_first_pass(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(500):
            if await conn.fetchval("SELECT count(*) FROM allowlist WHERE reason = 'ours'"):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the allowlist entry never committed")
    finally:
        await conn.close()


async def test_publishes_racing_allowlist_adds_never_leave_a_covered_candidate_open(
    hub: Hub,
) -> None:
    tenants = [await hub.tenant(), await hub.tenant()]
    nodes = [await hub.enroll(t) for t in tenants for _ in range(2)]
    values = [f"198.51.100.{i}" for i in range(1, 41)]

    async def publishes() -> None:
        for value in values:
            await asyncio.gather(*(publish(n, signal(n, value)) for n in nodes))

    async def adds() -> None:
        for i in range(1, 41, 4):
            await _allowlist(hub, f"198.51.100.{i}")

    await asyncio.gather(publishes(), adds())
    conn = await asyncpg.connect(hub.database_url)
    try:
        open_ = await conn.fetchval(
            "SELECT count(*) FROM candidates c WHERE c.state IN ('pending', 'approved')"
            " AND EXISTS (SELECT 1 FROM allowlist a WHERE a.cidr && c.network)"
        )
    finally:
        await conn.close()
    assert open_ == 0


async def test_the_hubs_own_addresses_are_listed_at_start_retracting_what_they_cover(
    hub: Hub,
) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    cid = await _candidate(node, "198.51.100.200")
    assert (await _decide(hub, rev, cid, "approve"))["status"] == "applied"
    pool = hub.client.app[app_state.POOL]

    await seed_public_addresses(
        pool, (allowlist.parse_cidr("198.51.100.200"),), to_datetime(hub.now())
    )
    assert await _state(hub, cid) == "retracted"
    audit = await hub.call("GET", "/v1/admin/audit")
    actions = [(e["action"], e["actor"]) for e in audit.body["entries"]]
    assert ("allowlist.add", "hub") in actions
    # Idempotent at every start: listed once, audited once.
    await seed_public_addresses(
        pool, (allowlist.parse_cidr("198.51.100.200"),), to_datetime(hub.now())
    )
    audit = await hub.call("GET", "/v1/admin/audit")
    assert [e["action"] for e in audit.body["entries"]].count("allowlist.add") == 1
