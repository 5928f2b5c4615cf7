"""Publishing (PROTOCOL.md sections 6 and 7) against the real hub, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import asyncpg

from tests.support import Hub, Node, envelope, publish, signal


async def _rows(hub: Hub, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(hub.database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_publish_accepts_and_creates_candidate(hub: Hub) -> None:
    node = await hub.enroll()
    payload = signal(node)
    reply = await publish(node, payload)
    assert reply.status == 202, reply.body
    [result] = reply.body["results"]
    assert result["status"] == "accepted"
    assert result["id"] == payload["id"]
    assert result["candidate_state"] == "pending"
    assert reply.headers["RateLimit-Policy"] == '"publish";q=600;w=60'
    assert reply.headers["RateLimit"].startswith('"publish";r=599;')
    again = await publish(node, payload)
    assert again.body["results"][0]["status"] == "duplicate"
    rows = await _rows(hub, "SELECT reporters, signal_count FROM candidates")
    assert [(r["reporters"], r["signal_count"]) for r in rows] == [(1, 1)]


async def test_payload_bytes_kept_exactly(hub: Hub) -> None:
    node = await hub.enroll()
    raw = b'{"v":1, "id":"%s"}' % b"x"
    payload = signal(node)
    raw = (
        b'{ "v" : 1 ,"id":"'
        + payload["id"].encode()
        + b'","node_id":"'
        + node.node_id.encode()
        + b'","observed_at":"'
        + payload["observed_at"].encode()
        + b'","indicator":{"type":"ip","value":"2001:DB8::0:1"},"scenario":"ssh/brute",'
        b'"action":"blocked","mode":"test","confidence":75,"ttl_seconds":600,"share":"mesh"}'
    )
    reply = await node.request("POST", "/v1/signals", {"envelopes": [envelope(node, raw)]})
    assert reply.body["results"][0]["status"] == "accepted", reply.body
    [row] = await _rows(hub, "SELECT payload, indicator_value FROM signals")
    assert bytes(row["payload"]) == raw
    assert row["indicator_value"] == "2001:db8::1"


async def test_eight_nodes_at_once_make_one_candidate(hub: Hub) -> None:
    tenant = await hub.tenant()
    nodes = [await hub.enroll(tenant) for _ in range(8)]
    replies = await asyncio.gather(*(publish(n, signal(n, confidence=50)) for n in nodes))
    assert all(r.body["results"][0]["status"] == "accepted" for r in replies)
    [row] = await _rows(hub, "SELECT reporters, tenants, signal_count, state FROM candidates")
    assert (row["reporters"], row["tenants"], row["signal_count"]) == (8, 1, 8)
    assert row["state"] == "pending"


async def test_corroboration_across_tenants_auto_approves(hub: Hub) -> None:
    t1, t2 = await hub.tenant(), await hub.tenant()
    a, b, c = await hub.enroll(t1), await hub.enroll(t1), await hub.enroll(t2)
    for node in (a, b):
        reply = await publish(node, signal(node))
        assert reply.body["results"][0]["candidate_state"] == "pending"
    reply = await publish(c, signal(c))
    assert reply.body["results"][0]["candidate_state"] == "approved", reply.body
    [row] = await _rows(hub, "SELECT state, origin FROM candidates")
    assert (row["state"], row["origin"]) == ("approved", "auto")
    audit = await _rows(hub, "SELECT actor, action FROM audit_log WHERE action LIKE 'candidate.%'")
    assert [(r["actor"], r["action"]) for r in audit] == [
        ("rule:corroboration", "candidate.approve")
    ]
    feed = await _rows(hub, "SELECT kind, entry FROM feed_log")
    assert [r["kind"] for r in feed] == ["added"]


async def test_corroboration_within_one_tenant_does_not_approve(hub: Hub) -> None:
    tenant = await hub.tenant()
    nodes = [await hub.enroll(tenant) for _ in range(4)]
    for node in nodes:
        reply = await publish(node, signal(node))
        assert reply.body["results"][0]["candidate_state"] == "pending"


async def test_trusted_node_auto_approves_its_own_signal(hub: Hub) -> None:
    node: Node = await hub.enroll()
    reply = await hub.call("PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": True})
    assert reply.status == 200
    low = await publish(node, signal(node, "198.51.100.1", confidence=89))
    assert low.body["results"][0]["candidate_state"] == "pending"
    high = await publish(node, signal(node, "198.51.100.2", confidence=90))
    assert high.body["results"][0]["candidate_state"] == "approved"
    broad = await publish(
        node, signal(node, confidence=95, indicator={"type": "cidr", "value": "198.51.0.0/16"})
    )
    assert broad.body["results"][0]["candidate_state"] == "pending"


async def test_allowlisted_candidate_is_rejected(hub: Hub) -> None:
    node = await hub.enroll()
    reply = await publish(node, signal(node, "8.8.8.8"))
    assert reply.body["results"][0]["candidate_state"] == "rejected"


async def _corroborated(hub: Hub, value: str = "203.0.113.9") -> list[Node]:
    t1, t2 = await hub.tenant(), await hub.tenant()
    nodes = [await hub.enroll(t1), await hub.enroll(t1), await hub.enroll(t2)]
    for node in nodes:
        reply = await publish(node, signal(node, value))
    assert reply.body["results"][0]["candidate_state"] == "approved"
    return nodes


async def test_allowlist_entry_retracts_active_decision(hub: Hub) -> None:
    await _corroborated(hub, "203.0.113.9")
    reply = await hub.call(
        "POST", "/v1/admin/allowlist", {"cidr": "203.0.113.0/24", "reason": "partner"}
    )
    assert reply.status == 201, reply.body
    [row] = await _rows(hub, "SELECT state, reason FROM candidates")
    assert (row["state"], row["reason"]) == ("retracted", "allowlisted")
    feed = await _rows(hub, "SELECT kind, reason FROM feed_log ORDER BY seq")
    assert [(r["kind"], r["reason"]) for r in feed] == [("added", None), ("removed", "retracted")]


async def test_revoking_a_corroborating_node_retracts_auto_decision(hub: Hub) -> None:
    nodes = await _corroborated(hub)
    reply = await hub.call("POST", f"/v1/admin/nodes/{nodes[2].node_id}/revoke")
    assert reply.status == 200, reply.body
    [row] = await _rows(hub, "SELECT state FROM candidates")
    assert row["state"] == "retracted"
    audit = await _rows(hub, "SELECT action FROM audit_log ORDER BY seq")
    assert [r["action"] for r in audit][-2:] == ["node.revoke", "candidate.retract"]


async def test_untrusting_a_node_retracts_its_trusted_decision(hub: Hub) -> None:
    node = await hub.enroll()
    await hub.call("PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": True})
    reply = await publish(node, signal(node, confidence=95))
    assert reply.body["results"][0]["candidate_state"] == "approved"
    await hub.call("PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": False})
    [row] = await _rows(hub, "SELECT state FROM candidates")
    assert row["state"] == "retracted"
    # Retracted by a rule, not a reviewer: a new signal reopens it, and no rule holds.
    again = await publish(node, signal(node, confidence=95))
    assert again.body["results"][0]["candidate_state"] == "pending"


async def test_approved_candidate_expiry_extended_within_auto_cap(hub: Hub) -> None:
    nodes = await _corroborated(hub)
    [before] = await _rows(hub, "SELECT expires_at FROM candidates")
    hub.clock.advance(600)
    await publish(nodes[0], signal(nodes[0], "203.0.113.9", ttl_seconds=2592000))
    [after] = await _rows(hub, "SELECT expires_at, approved_at FROM candidates")
    assert after["expires_at"] > before["expires_at"]
    assert (after["expires_at"] - after["approved_at"]).total_seconds() == 600 + 86400
    feed = await _rows(hub, "SELECT kind FROM feed_log ORDER BY seq")
    assert [r["kind"] for r in feed] == ["added", "added"]


async def test_resend_after_a_crash_before_policy_makes_the_moves(hub: Hub) -> None:
    """Signals stored, then the hub died before policy ran (so no 202 left): the
    node's re-send is a duplicate, and the approval happens then."""
    import base64
    import ipaddress
    import json
    import uuid
    from datetime import UTC, datetime

    from honeymesh_hub.store import signals as signal_store
    from honeymesh_hub.store.signals import SignalRow

    node = await hub.enroll()
    await hub.call("PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": True})
    payload = signal(node, "198.51.100.77", confidence=95)
    env = envelope(node, payload)
    now = datetime.fromtimestamp(hub.now(), UTC)
    row = SignalRow(
        signal_uuid=uuid.UUID(payload["id"]),
        keyid=node.key.keyid,
        indicator_type="ip",
        indicator_value="198.51.100.77",
        network=ipaddress.ip_network("198.51.100.77/32"),
        scope="mesh",
        scope_tenant_id=None,
        scope_key="mesh",
        payload=base64.b64decode(env["payload"]),
        sig=base64.b64decode(env["signatures"][0]["sig"]),
        scenario=payload["scenario"],
        confidence=95,
        ttl_seconds=3600,
        observed_at=now,
    )
    conn = await asyncpg.connect(hub.database_url)
    try:
        await signal_store.store(
            conn,
            [row],
            node_id=uuid.UUID(node.node_id),
            tenant_id=uuid.UUID(node.tenant_id),
            now=now,
            qualify_confidence=70,
        )
        assert await conn.fetchval("SELECT state FROM candidates") == "pending"
    finally:
        await conn.close()
    reply = await node.request("POST", "/v1/signals", {"envelopes": [env]})
    assert reply.body["results"][0]["status"] == "duplicate", reply.body
    [cand] = await _rows(hub, "SELECT state, origin FROM candidates")
    assert (cand["state"], cand["origin"]) == ("approved", "trusted")
    assert json.loads(base64.b64decode(env["payload"]))["id"] == payload["id"]


# --------------------------------------------------------------------------- group commit


def _row(node: Node, value: str, *, confidence: int = 50, signal_id: str | None = None) -> Any:
    import ipaddress
    import uuid
    from datetime import UTC, datetime

    from honeymesh_hub.store.signals import SignalRow

    return SignalRow(
        signal_uuid=uuid.UUID(signal_id) if signal_id else uuid.uuid4(),
        keyid=node.key.keyid,
        indicator_type="ip",
        indicator_value=value,
        network=ipaddress.ip_network(f"{value}/32"),
        scope="mesh",
        scope_tenant_id=None,
        scope_key="mesh",
        payload=b"{}",
        sig=b"s",
        scenario="ssh/brute",
        confidence=confidence,
        ttl_seconds=600,
        observed_at=datetime.now(UTC),
    )


def _part(node: Node, *rows: Any, node_id: str | None = None) -> Any:
    import uuid
    from datetime import UTC, datetime

    from honeymesh_hub.store.signals import StorePart

    return StorePart(
        list(rows), uuid.UUID(node_id or node.node_id), uuid.UUID(node.tenant_id), datetime.now(UTC)
    )


def _groups(hub: Hub, size: int) -> Any:
    """A gatherer on the hub's pool that flushes only at `size` envelopes (or when the
    statement in flight ends): gathering 1 + `size` stores makes the first go alone (the
    gatherer was idle) and the other `size` exactly one group, with no timing involved."""
    from honeymesh_hub import state
    from honeymesh_hub.services.groupcommit import StoreGroups

    return StoreGroups(hub.client.app[state.POOL], 70, max_size=size, max_wait=3600.0)


async def test_group_of_many_nodes_stores_each_its_own_rows_with_exact_counts(hub: Hub) -> None:
    t1, t2 = await hub.tenant(), await hub.tenant()
    nodes = [await hub.enroll(t1 if i % 2 else t2) for i in range(6)]
    groups = _groups(hub, 12)
    # Each node: one signal on a shared indicator, one on its own; the lead store alone.
    parts = [_part(nodes[0], _row(nodes[0], "198.51.100.9"))] + [
        _part(n, _row(n, value, confidence=90))
        for i, n in enumerate(nodes)
        for value in ("203.0.113.50", f"203.0.113.{60 + i}")
    ]
    stored = await asyncio.gather(*(groups.store(p) for p in parts))
    for part, rows in zip(parts, stored, strict=True):
        assert [(r["node_id"], r["signal_uuid"]) for r in rows] == [
            (part.node_id, part.rows[0].signal_uuid)
        ]
    [shared] = await _rows(
        hub,
        "SELECT reporters, tenants, signal_count FROM candidates WHERE indicator_value = $1",
        "203.0.113.50",
    )
    assert (shared["reporters"], shared["tenants"], shared["signal_count"]) == (6, 2, 6)
    reporters = await _rows(
        hub,
        "SELECT count(*) AS n, count(qualified_at) AS q FROM candidate_reporters"
        " WHERE indicator_value = $1",
        "203.0.113.50",
    )
    assert (reporters[0]["n"], reporters[0]["q"]) == (6, 6)
    assert len(await _rows(hub, "SELECT 1 FROM signals")) == len(parts)


async def test_duplicate_racing_within_a_group_is_one_accepted_one_duplicate(hub: Hub) -> None:
    node, other = await hub.enroll(), await hub.enroll()
    groups = _groups(hub, 3)
    same = str(__import__("uuid").uuid4())
    parts = [
        _part(other, _row(other, "198.51.100.9")),
        _part(node, _row(node, "203.0.113.70", signal_id=same)),
        _part(node, _row(node, "203.0.113.70", signal_id=same)),
        _part(other, _row(other, "203.0.113.70", signal_id=same)),  # another node's id
    ]
    stored = await asyncio.gather(*(groups.store(p) for p in parts))
    assert [len(rows) for rows in stored] == [1, 1, 0, 1]
    [cand] = await _rows(
        hub, "SELECT reporters, signal_count FROM candidates WHERE indicator_value = '203.0.113.70'"
    )
    assert (cand["reporters"], cand["signal_count"]) == (2, 2)


async def test_a_failing_group_is_stored_one_request_at_a_time(hub: Hub) -> None:
    import uuid

    nodes = [await hub.enroll() for _ in range(3)]
    groups = _groups(hub, 3)
    bad = _part(nodes[1], _row(nodes[1], "203.0.113.80"), node_id=str(uuid.uuid4()))
    parts = [
        _part(nodes[0], _row(nodes[0], "198.51.100.9")),
        _part(nodes[0], _row(nodes[0], "203.0.113.80")),
        bad,  # no such node: the group's statement fails, and then this one alone
        _part(nodes[2], _row(nodes[2], "203.0.113.80")),
    ]
    stored = await asyncio.gather(*(groups.store(p) for p in parts), return_exceptions=True)
    assert isinstance(stored[2], asyncpg.ForeignKeyViolationError)
    assert [len(r) for i, r in enumerate(stored) if i != 2] == [1, 1, 1]
    [cand] = await _rows(
        hub, "SELECT reporters, signal_count FROM candidates WHERE indicator_value = '203.0.113.80'"
    )
    assert (cand["reporters"], cand["signal_count"]) == (2, 2)


async def test_concurrent_single_publishes_from_many_nodes_all_answer_their_own(hub: Hub) -> None:
    tenants = [await hub.tenant() for _ in range(3)]
    nodes = [await hub.enroll(tenants[i % 3]) for i in range(8)]
    payloads = [signal(n, "203.0.113.90" if i else "203.0.113.100") for i, n in enumerate(nodes)]
    bad = envelope(nodes[5], payloads[5])
    bad["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
    again = signal(nodes[3], "198.51.100.33")

    async def send(i: int) -> Any:
        node = nodes[i]
        if i == 5:
            return await node.request("POST", "/v1/signals", {"envelopes": [bad]})
        if i == 3:  # the same (node, id) twice at once: one accepted, one duplicate
            return await asyncio.gather(publish(node, again), publish(node, again))
        return await publish(node, payloads[i])

    replies = await asyncio.gather(*(send(i) for i in range(len(nodes))))
    for i, reply in enumerate(replies):
        if i == 3:
            statuses = sorted(r.body["results"][0]["status"] for r in reply)
            assert statuses == ["accepted", "duplicate"]
            continue
        assert reply.status == 202, reply.body
        [result] = reply.body["results"]
        if i == 5:
            assert result["error"]["code"] == "invalid_envelope_signature"
        else:
            assert (result["status"], result["id"]) == ("accepted", payloads[i]["id"])
    [shared] = await _rows(
        hub,
        "SELECT id, reporters, tenants, signal_count FROM candidates"
        " WHERE indicator_value = '203.0.113.90'",
    )
    # Nodes 1 to 7 sent the shared indicator, of three tenants; 3 sent another instead
    # and 5's was refused.
    assert (shared["reporters"], shared["tenants"], shared["signal_count"]) == (5, 3, 5)
    ids = {r.body["results"][0].get("candidate_id") for i, r in enumerate(replies) if i in (1, 7)}
    assert ids == {str(shared["id"])}
    assert len(await _rows(hub, "SELECT 1 FROM signals")) == 7
