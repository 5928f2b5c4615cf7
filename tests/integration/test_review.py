"""The reviewer API (PROTOCOL.md section 7) against the real hub, PostgreSQL and Redis:
scope isolation, leases, the two-reviewer rule, decisions and their audit and feed rows.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from honeymesh_client.protocol import dsse
from honeymesh_hub import state as app_state
from honeymesh_hub.clock import to_datetime
from honeymesh_hub.services.expiry import sweep
from tests.integration.foundation import assert_problem
from tests.support import Hub, Node, Reply, publish, signal

WEEK = 7 * 86400


async def _rows(hub: Hub, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(hub.database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _candidate(node: Node, value: str = "203.0.113.7", **overrides: Any) -> str:
    reply = await publish(node, signal(node, value, **overrides))
    assert reply.status == 202, reply.body
    [result] = reply.body["results"]
    assert result["status"] == "accepted", result
    return str(result["candidate_id"])


async def _decide(hub: Hub, token: str, *decisions: dict[str, Any]) -> list[dict[str, Any]]:
    reply = await hub.call(
        "POST", "/v1/review/decisions", {"decisions": list(decisions)}, token=token
    )
    assert reply.status == 200, reply.body
    results: list[dict[str, Any]] = reply.body["results"]
    assert [r["candidate_id"] for r in results] == [d["candidate_id"] for d in decisions]
    return results


def _d(
    candidate_id: str, action: str, reason: str = "looked at it", **extra: Any
) -> dict[str, Any]:
    return {"candidate_id": candidate_id, "action": action, "reason": reason, **extra}


async def _one(
    hub: Hub, token: str, candidate_id: str, action: str, **extra: Any
) -> dict[str, Any]:
    [result] = await _decide(hub, token, _d(candidate_id, action, **extra))
    return result


async def _view(hub: Hub, token: str, candidate_id: str) -> dict[str, Any]:
    reply = await hub.call("GET", f"/v1/review/candidates/{candidate_id}", token=token)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


async def _queue(hub: Hub, token: str, query: str = "") -> Reply:
    return await hub.call("GET", f"/v1/review/candidates{query}", token=token)


def _ids(reply: Reply) -> list[str]:
    assert reply.status == 200, reply.body
    return [c["id"] for c in reply.body["candidates"]]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _now(hub: Hub) -> datetime:
    return datetime.fromtimestamp(hub.now(), UTC).replace(microsecond=0)


async def _feed(hub: Hub, candidate_id: str) -> list[tuple[str, str | None]]:
    rows = await _rows(
        hub,
        "SELECT kind, reason FROM feed_log WHERE candidate_id = $1 ORDER BY seq",
        uuid.UUID(candidate_id),
    )
    return [(r["kind"], r["reason"]) for r in rows]


# -- scope -------------------------------------------------------------------------------


async def test_scopes_isolate_mesh_and_tenants(hub: Hub) -> None:
    tenant_a, tenant_b = await hub.tenant(), await hub.tenant()
    node_a, node_b = await hub.enroll(tenant_a), await hub.enroll(tenant_b)
    mesh = await _candidate(node_a, "203.0.113.1")
    only_a = await _candidate(node_a, "203.0.113.2", share="tenant")
    only_b = await _candidate(node_b, "203.0.113.3", share="tenant")
    mesh_rev = await hub.reviewer_token("mesh", "m")
    rev_a = await hub.reviewer_token(tenant_a, "a")
    rev_b = await hub.reviewer_token(tenant_b, "b")

    assert _ids(await _queue(hub, mesh_rev)) == [mesh]
    assert _ids(await _queue(hub, rev_a)) == [only_a]
    assert _ids(await _queue(hub, rev_b)) == [only_b]

    view = await _view(hub, rev_a, only_a)
    assert view["scope"] == "tenant"
    assert view["tenant_id"] == tenant_a
    assert "tenant_id" not in await _view(hub, mesh_rev, mesh)

    for token, hidden in (
        (mesh_rev, only_a),
        (mesh_rev, only_b),
        (rev_a, mesh),
        (rev_a, only_b),
        (rev_b, only_a),
    ):
        got = await hub.call("GET", f"/v1/review/candidates/{hidden}", token=token)
        missing = await hub.call("GET", f"/v1/review/candidates/{uuid.uuid4()}", token=token)
        assert_problem(got, 404, "not_found")
        assert_problem(missing, 404, "not_found")
        assert got.body["detail"] == missing.body["detail"]
        claimed = await hub.call(
            "POST", f"/v1/review/candidates/{hidden}/claim", {"lease_seconds": 60}, token=token
        )
        assert_problem(claimed, 404, "not_found")
        result = await _one(hub, token, hidden, "reject")
        assert result["status"] == "refused"
        assert result["error"]["code"] == "not_found"
        assert "state" not in result
    rows = await _rows(hub, "SELECT state, claimed_by FROM candidates")
    assert {(r["state"], r["claimed_by"]) for r in rows} == {("pending", None)}
    assert await _rows(hub, "SELECT 1 FROM decisions") == []


async def test_candidate_view_carries_signals_as_published_and_history(hub: Hub) -> None:
    tenant = await hub.tenant()
    one, two = await hub.enroll(tenant), await hub.enroll(tenant)
    cid = await _candidate(one, "198.51.100.20", confidence=60, ttl_seconds=900)
    hub.clock.advance(5)
    assert await _candidate(two, "198.51.100.20", confidence=75, ttl_seconds=1200) == cid
    rev = await hub.reviewer_token()
    view = await _view(hub, rev, cid)
    assert view["indicator"] == {"type": "ip", "value": "198.51.100.20"}
    assert (view["state"], view["reporters"], view["tenants"], view["signal_count"]) == (
        "pending",
        2,
        1,
        2,
    )
    assert view["max_confidence"] == 75
    assert view["origin"] is None and view["expires_at"] is None
    assert (view["claimed_by"], view["lease_expires_at"]) == (None, None)
    assert (view["broad"], view["approvals"], view["approvals_needed"]) == (False, [], 1)
    assert [s["node_id"] for s in view["signals"]] == [two.node_id, one.node_id]  # newest first
    stored = {
        r["signal_uuid"]: bytes(r["payload"])
        for r in await _rows(hub, "SELECT signal_uuid, payload FROM signals")
    }
    for item in view["signals"]:
        env = dsse.parse_envelope(item["envelope"])
        assert item["envelope"]["payloadType"] == "application/vnd.honeymesh.signal+json"
        assert env.keyid == item["keyid"]
        public_key = base64.b64decode(item["public_key"], validate=True)
        payload = dsse.verify_envelope(env, public_key)  # the publisher's own signature
        assert payload == stored[uuid.UUID(item["signal_id"])]
        assert json.loads(payload)["node_id"] == item["node_id"]
        assert item["tenant_id"] == tenant
    assert view["decisions"] == []

    result = await _one(hub, rev, cid, "approve")
    assert (result["status"], result["state"]) == ("applied", "approved")
    view = await _view(hub, rev, cid)
    [decision] = view["decisions"]
    assert (decision["action"], decision["from_state"], decision["to_state"]) == (
        "approve",
        "pending",
        "approved",
    )
    assert (decision["actor"], decision["reason"], decision["origin"]) == (
        "reviewer:rev",
        "looked at it",
        "review",
    )
    # Without ttl_seconds: now plus the largest ttl_seconds of its signals.
    assert _time(view["expires_at"]) == _now(hub) + timedelta(seconds=1200)
    assert (view["origin"], view["approvals_needed"]) == ("review", 0)


# -- the queue ---------------------------------------------------------------------------


async def _queue_world(hub: Hub) -> tuple[str, dict[str, str]]:
    """Five mesh candidates: reporters 3, 2, 1, 1, 1, opened a second apart."""
    tenant = await hub.tenant()
    nodes = [await hub.enroll(tenant) for _ in range(3)]
    made: dict[str, str] = {}
    for value, reporters in (
        ("203.0.113.10", 1),
        ("203.0.113.11", 3),
        ("203.0.113.12", 1),
        ("198.51.100.13", 2),
        ("203.0.113.14", 1),
    ):
        for node in nodes[:reporters]:
            made[value] = await _candidate(node, value, confidence=50)
        hub.clock.advance(1)
    await _candidate(nodes[0], "198.51.100.99", scenario="ssh/brute-force", confidence=50)
    return await hub.reviewer_token(), made


async def _follow(hub: Hub, token: str, query: str) -> list[str]:
    ids: list[str] = []
    reply = await _queue(hub, token, f"?{query}")
    while True:
        ids += _ids(reply)
        assert len(reply.body["candidates"]) <= 2
        if "next" not in reply.body:
            return ids
        after = reply.body["next"]
        assert after.replace("-", "").replace("_", "").isalnum()
        reply = await _queue(hub, token, f"?{query}&after={after}")


async def test_queue_orders_pages_and_filters(hub: Hub) -> None:
    rev, made = await _queue_world(hub)
    other = (await _rows(hub, "SELECT id FROM candidates WHERE indicator_value = '198.51.100.99'"))[
        0
    ]["id"]
    oldest = [made[v] for v in ("203.0.113.10", "203.0.113.11", "203.0.113.12")]
    oldest += [made["198.51.100.13"], made["203.0.113.14"], str(other)]
    everything = _ids(await _queue(hub, rev, "?order=oldest"))
    assert everything == oldest
    assert await _follow(hub, rev, "order=oldest&limit=2") == oldest

    by_reporters = _ids(await _queue(hub, rev))  # order=reporters is the default
    assert by_reporters[:2] == [made["203.0.113.11"], made["198.51.100.13"]]
    assert sorted(by_reporters[2:]) == sorted(set(oldest) - set(by_reporters[:2]))
    # Ties by id, descending: the pages are stable.
    assert by_reporters[2:] == sorted(by_reporters[2:], reverse=True)
    assert await _follow(hub, rev, "order=reporters&limit=2") == by_reporters
    first = await _queue(hub, rev, "?limit=6")
    assert "next" not in first.body

    assert _ids(await _queue(hub, rev, "?min_reporters=2")) == by_reporters[:2]
    assert _ids(await _queue(hub, rev, "?order=oldest&indicator=198.51.100.")) == [
        made["198.51.100.13"],
        str(other),
    ]
    assert _ids(await _queue(hub, rev, "?indicator=203.0.113.11")) == [made["203.0.113.11"]]
    assert _ids(await _queue(hub, rev, "?scenario=ssh/brute-force")) == [str(other)]
    assert _ids(await _queue(hub, rev, "?state=approved")) == []

    # A cursor of one order is refused by the other.
    page = await _queue(hub, rev, "?order=oldest&limit=1")
    assert_problem(
        await _queue(hub, rev, f"?order=reporters&after={page.body['next']}"),
        422,
        "validation_failed",
    )

    await _one(hub, rev, made["203.0.113.11"], "approve")
    assert _ids(await _queue(hub, rev, "?state=approved")) == [made["203.0.113.11"]]
    assert made["203.0.113.11"] not in _ids(await _queue(hub, rev, "?limit=500"))


# -- leases ------------------------------------------------------------------------------


async def test_claim_race_renew_and_lapse(hub: Hub) -> None:
    node = await hub.enroll()
    cid = await _candidate(node)
    alice = await hub.reviewer_token(name="alice")
    bob = await hub.reviewer_token(name="bob")
    path = f"/v1/review/candidates/{cid}/claim"
    replies = await asyncio.gather(
        hub.call("POST", path, {"lease_seconds": 300}, token=alice),
        hub.call("POST", path, {"lease_seconds": 300}, token=bob),
    )
    assert sorted(r.status for r in replies) == [200, 409]
    won = next(r for r in replies if r.status == 200)
    lost = next(r for r in replies if r.status == 409)
    assert_problem(lost, 409, "conflict")
    winner, loser = (alice, bob) if won.body["claimed_by"] == "alice" else (bob, alice)
    assert won.body["id"] == won.body["candidate_id"] == cid
    assert _time(won.body["lease_expires_at"]) == _now(hub) + timedelta(seconds=300)

    # The loser's decision is refused while the lease runs; nothing changes.
    result = await _one(hub, loser, cid, "approve")
    assert result["status"] == "refused" and result["error"]["code"] == "conflict"
    assert (await _view(hub, loser, cid))["state"] == "pending"

    # The holder renews (a new lease from now), with the default lease when no body.
    hub.clock.advance(200)
    renewed = await hub.call("POST", path, token=winner)
    assert renewed.status == 200, renewed.body
    assert _time(renewed.body["lease_expires_at"]) == _now(hub) + timedelta(seconds=300)
    hub.clock.advance(299)
    assert_problem(
        await hub.call("POST", path, {"lease_seconds": 30}, token=loser), 409, "conflict"
    )

    # Lapsed by the hub's clock: the other reviewer may claim and decide.
    hub.clock.advance(1)
    view = await _view(hub, loser, cid)
    assert (view["claimed_by"], view["lease_expires_at"]) == (None, None)
    taken = await hub.call("POST", path, {"lease_seconds": 30}, token=loser)
    assert taken.status == 200, taken.body
    result = await _one(hub, winner, cid, "reject")
    assert result["status"] == "refused" and result["error"]["code"] == "conflict"
    result = await _one(hub, loser, cid, "reject")
    assert (result["status"], result["state"]) == ("applied", "rejected")
    # A decision that changed the candidate ends the lease on it.
    [row] = await _rows(hub, "SELECT claimed_by, lease_expires_at FROM candidates")
    assert (row["claimed_by"], row["lease_expires_at"]) == (None, None)
    claims = await _rows(hub, "SELECT actor FROM audit_log WHERE action = 'candidate.claim'")
    assert len(claims) == 3


async def test_same_name_other_token_is_another_lease_holder(hub: Hub) -> None:
    node = await hub.enroll()
    cid = await _candidate(node)
    first = await hub.reviewer_token(name="carol")
    second = await hub.reviewer_token(name="carol")
    path = f"/v1/review/candidates/{cid}/claim"
    assert (await hub.call("POST", path, token=first)).status == 200
    assert_problem(await hub.call("POST", path, token=second), 409, "conflict")


# -- decisions ---------------------------------------------------------------------------


async def test_broad_range_needs_two_reviewers_of_different_names(hub: Hub) -> None:
    node = await hub.enroll()
    cid = await _candidate(node, indicator={"type": "cidr", "value": "198.51.0.0/16"})
    alice = await hub.reviewer_token(name="alice")
    alice_again = await hub.reviewer_token(name="alice")
    bob = await hub.reviewer_token(name="bob")
    view = await _view(hub, alice, cid)
    assert (view["broad"], view["approvals"], view["approvals_needed"]) == (True, [], 2)

    result = await _one(hub, alice, cid, "approve")
    assert (result["status"], result["state"]) == ("applied", "pending")
    view = await _view(hub, bob, cid)
    assert view["approvals"] == [{"reviewer": "alice", "time": view["approvals"][0]["time"]}]
    assert view["approvals_needed"] == 1
    assert [d["action"] for d in view["decisions"]] == ["first_approval"]
    assert await _feed(hub, cid) == []

    # The same name again, by the same or another token, does not count.
    for token in (alice, alice_again):
        result = await _one(hub, token, cid, "approve")
        assert (result["status"], result["state"]) == ("unchanged", "pending")
    assert (await _view(hub, bob, cid))["approvals_needed"] == 1

    result = await _one(hub, bob, cid, "approve", ttl_seconds=3600)
    assert (result["status"], result["state"]) == ("applied", "approved")
    view = await _view(hub, bob, cid)
    assert (view["origin"], view["approvals"], view["approvals_needed"]) == ("review", [], 0)
    assert await _feed(hub, cid) == [("added", None)]
    audit = await _rows(
        hub,
        "SELECT actor, action, details FROM audit_log WHERE target = $1 ORDER BY seq",
        f"candidate:{cid}",
    )
    assert [(r["actor"], r["action"]) for r in audit] == [
        ("reviewer:alice", "candidate.first_approval"),
        ("reviewer:bob", "candidate.approve"),
    ]


async def test_first_approval_counts_until_the_state_changes(hub: Hub) -> None:
    node = await hub.enroll()
    cid = await _candidate(node, indicator={"type": "cidr", "value": "2001:db8::/40"})
    alice = await hub.reviewer_token(name="alice")
    bob = await hub.reviewer_token(name="bob")
    assert (await _one(hub, alice, cid, "approve"))["state"] == "pending"
    assert (await _one(hub, bob, cid, "reject"))["state"] == "rejected"
    # Rejected: alice's earlier approval no longer counts; two names are needed again.
    assert (await _view(hub, bob, cid))["approvals_needed"] == 2
    result = await _one(hub, bob, cid, "approve")
    assert (result["status"], result["state"]) == ("applied", "rejected")
    result = await _one(hub, alice, cid, "approve")
    assert (result["status"], result["state"]) == ("applied", "approved")


async def test_repeated_decisions_are_unchanged(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    approved = await _candidate(node, "203.0.113.20")
    rejected = await _candidate(node, "203.0.113.21")
    for cid, action, state in (
        (approved, "approve", "approved"),
        (rejected, "reject", "rejected"),
        (approved, "retract", "retracted"),
    ):
        first = await _one(hub, rev, cid, action)
        assert (first["status"], first["state"]) == ("applied", state)
        before = await _rows(hub, "SELECT count(*) AS n FROM audit_log")
        again = await _one(hub, rev, cid, action)
        assert (again["status"], again["state"]) == ("unchanged", state)
        assert await _rows(hub, "SELECT count(*) AS n FROM audit_log") == before
    # Twice in one request: the second is unchanged too.
    other = await _candidate(node, "203.0.113.22")
    results = await _decide(hub, rev, _d(other, "approve"), _d(other, "approve"))
    assert [(r["status"], r["state"]) for r in results] == [
        ("applied", "approved"),
        ("unchanged", "approved"),
    ]
    assert await _feed(hub, other) == [("added", None)]


async def test_concurrent_identical_decisions_apply_once(hub: Hub) -> None:
    node = await hub.enroll()
    alice = await hub.reviewer_token(name="alice")
    bob = await hub.reviewer_token(name="bob")
    made = [await _candidate(node, f"203.0.113.{i}") for i in range(80, 90)]
    batch = {"decisions": [_d(cid, "approve") for cid in made]}
    replies = await asyncio.gather(
        hub.call("POST", "/v1/review/decisions", batch, token=alice),
        hub.call("POST", "/v1/review/decisions", batch, token=bob),
    )
    assert [r.status for r in replies] == [200, 200]
    for i, cid in enumerate(made):
        statuses = sorted(r.body["results"][i]["status"] for r in replies)
        assert statuses == ["applied", "unchanged"], cid
        assert await _feed(hub, cid) == [("added", None)]
    approvals = await _rows(hub, "SELECT 1 FROM audit_log WHERE action = 'candidate.approve'")
    assert len(approvals) == len(made)


@pytest.mark.parametrize(
    ("state", "action"),
    [
        ("pending", "retract"),
        ("approved", "reject"),
        ("rejected", "retract"),
        ("retracted", "reject"),
        ("expired", "reject"),
        ("expired", "retract"),
    ],
)
async def test_moves_outside_the_table_are_conflicts(hub: Hub, state: str, action: str) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    cid = await _candidate(node)
    if state in ("approved", "retracted", "expired"):
        await _one(hub, rev, cid, "approve", ttl_seconds=300)
    if state == "retracted":
        await _one(hub, rev, cid, "retract")
    if state == "rejected":
        await _one(hub, rev, cid, "reject")
    if state == "expired":
        hub.clock.advance(300)
        await sweep(hub.client.app[app_state.POOL], to_datetime(hub.now()))
    before = await _rows(hub, "SELECT state, updated_at FROM candidates")
    assert before[0]["state"] == state
    result = await _one(hub, rev, cid, action)
    assert result["status"] == "refused"
    assert result["error"]["code"] == "conflict"
    assert "state" not in result
    assert await _rows(hub, "SELECT state, updated_at FROM candidates") == before


@pytest.mark.parametrize("start", ["rejected", "expired", "retracted"])
async def test_approve_reopens_decided_candidates(hub: Hub, start: str) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    cid = await _candidate(node, ttl_seconds=600)
    if start == "rejected":
        await _one(hub, rev, cid, "reject")
    else:
        await _one(hub, rev, cid, "approve", ttl_seconds=300)
        if start == "retracted":
            await _one(hub, rev, cid, "retract")
        else:
            hub.clock.advance(300)
            await sweep(hub.client.app[app_state.POOL], to_datetime(hub.now()))
    assert (await _view(hub, rev, cid))["state"] == start
    result = await _one(hub, rev, cid, "approve")
    assert (result["status"], result["state"]) == ("applied", "approved")
    view = await _view(hub, rev, cid)
    assert view["origin"] == "review"
    assert _time(view["expires_at"]) == _now(hub) + timedelta(seconds=600)
    assert (await _feed(hub, cid))[-1] == ("added", None)


async def test_retract_removes_from_the_feed_and_locks_out_automation(hub: Hub) -> None:
    t1, t2 = await hub.tenant(), await hub.tenant()
    nodes = [await hub.enroll(t1), await hub.enroll(t1), await hub.enroll(t2)]
    rev = await hub.reviewer_token()
    cid = await _candidate(nodes[0], "203.0.113.40")
    assert (await _one(hub, rev, cid, "approve"))["state"] == "approved"
    result = await _one(hub, rev, cid, "retract", reason="false positive")
    assert (result["status"], result["state"]) == ("applied", "retracted")
    assert await _feed(hub, cid) == [("added", None), ("removed", "retracted")]
    [row] = await _rows(hub, "SELECT entry FROM feed_log WHERE kind = 'removed'")
    assert json.loads(row["entry"])["id"] == cid
    # A new signal reopens it, but corroboration never approves it again.
    for node in nodes:
        reply = await publish(node, signal(node, "203.0.113.40"))
        assert reply.body["results"][0]["candidate_state"] == "pending"
    [row] = await _rows(hub, "SELECT state, reviewer_locked, reporters, tenants FROM candidates")
    assert (row["state"], row["reviewer_locked"], row["reporters"], row["tenants"]) == (
        "pending",
        True,
        3,
        2,
    )


async def test_rejected_counts_for_seven_days_then_reopens_for_review_only(hub: Hub) -> None:
    t1, t2 = await hub.tenant(), await hub.tenant()
    nodes = [await hub.enroll(t1), await hub.enroll(t1), await hub.enroll(t2)]
    rev = await hub.reviewer_token()
    cid = await _candidate(nodes[0], "203.0.113.50")
    assert (await _one(hub, rev, cid, "reject"))["state"] == "rejected"
    again = await publish(nodes[1], signal(nodes[1], "203.0.113.50"))
    assert again.body["results"][0]["candidate_state"] == "rejected"
    hub.clock.advance(WEEK - 1)
    again = await publish(nodes[2], signal(nodes[2], "203.0.113.50"))
    assert again.body["results"][0]["candidate_state"] == "rejected"
    hub.clock.advance(1)
    for node in nodes:  # three nodes of two tenants: would corroborate, but locked
        reply = await publish(node, signal(node, "203.0.113.50"))
        assert reply.body["results"][0]["candidate_state"] == "pending"
    view = await _view(hub, rev, cid)
    assert (view["state"], view["reporters"], view["tenants"]) == ("pending", 3, 2)
    assert [d["action"] for d in view["decisions"]] == ["reject", "reopen"]
    assert await _feed(hub, cid) == []
    assert (await _one(hub, rev, cid, "approve"))["state"] == "approved"


async def test_reviewer_ttl_sets_and_caps_expiry(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    cid = await _candidate(node, ttl_seconds=7200)
    await _one(hub, rev, cid, "approve", ttl_seconds=600)
    approved_at = to_datetime(hub.now())
    assert _time((await _view(hub, rev, cid))["expires_at"]) == _now(hub) + timedelta(seconds=600)
    # A later signal extends an approval, but never past what the reviewer set.
    hub.clock.advance(100)
    await publish(node, signal(node, ttl_seconds=7200))
    [row] = await _rows(hub, "SELECT expires_at, expiry_cap FROM candidates")
    assert row["expires_at"] == row["expiry_cap"] == approved_at + timedelta(seconds=600)


@pytest.mark.parametrize("action", ["reject", "retract"])
async def test_ttl_seconds_only_with_approve(hub: Hub, action: str) -> None:
    """The decisions schema says so (found by tests/fuzz); refused before any decision."""
    rev = await hub.reviewer_token()
    item = {"candidate_id": str(uuid.uuid4()), "action": action, "reason": "r"}
    reply = await hub.call(
        "POST", "/v1/review/decisions", {"decisions": [{**item, "ttl_seconds": 600}]}, token=rev
    )
    assert reply.status == 422, reply.body
    assert reply.body["errors"][0]["pointer"] == "/decisions/0/ttl_seconds"


async def test_a_batch_answers_each_decision_alone(hub: Hub) -> None:
    node = await hub.enroll()
    tenant_rev = await hub.reviewer_token(node.tenant_id, "t")
    rev = await hub.reviewer_token(name="m")
    a = await _candidate(node, "203.0.113.60")
    b = await _candidate(node, "203.0.113.61")
    hidden = await _candidate(node, "203.0.113.62", share="tenant")
    unknown = str(uuid.uuid4())
    results = await _decide(
        hub,
        rev,
        _d(a, "approve"),
        _d(unknown, "approve"),
        _d(b, "retract"),
        _d(hidden, "reject"),
        _d(b, "reject"),
        _d(a, "retract"),
    )
    assert [(r["status"], r.get("state"), r.get("error", {}).get("code")) for r in results] == [
        ("applied", "approved", None),
        ("refused", None, "not_found"),
        ("refused", None, "conflict"),
        ("refused", None, "not_found"),
        ("applied", "rejected", None),
        # One change per candidate per request: the retract waits for the next one.
        ("refused", None, "conflict"),
    ]
    assert all(set(r["error"]) == {"code", "detail"} for r in results if "error" in r)
    states = {
        str(r["id"]): r["state"] for r in await _rows(hub, "SELECT id, state FROM candidates")
    }
    assert states == {a: "approved", b: "rejected", hidden: "pending"}
    assert (await _one(hub, tenant_rev, hidden, "reject"))["state"] == "rejected"
    assert (await _one(hub, rev, a, "retract"))["state"] == "retracted"


async def test_every_decision_is_in_the_audit_log(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token(name="dora")
    a = await _candidate(node, "203.0.113.70")
    b = await _candidate(node, "203.0.113.71")
    await _decide(hub, rev, _d(a, "approve", "seen on 40 sensors"), _d(b, "reject", "a CDN"))
    await _one(hub, rev, a, "retract", reason="customer complaint")
    reply = await hub.call("GET", "/v1/admin/audit?limit=500")
    assert reply.status == 200, reply.body
    entries = [e for e in reply.body["entries"] if e["action"].startswith("candidate.")]
    got = [
        (
            e["actor"],
            e["action"],
            e["target"],
            e["reason"],
            e["details"]["from"],
            e["details"]["to"],
        )
        for e in entries
    ]
    assert got == [
        ("reviewer:dora", "candidate.approve", f"candidate:{a}", "seen on 40 sensors",
         "pending", "approved"),
        ("reviewer:dora", "candidate.reject", f"candidate:{b}", "a CDN", "pending", "rejected"),
        ("reviewer:dora", "candidate.retract", f"candidate:{a}", "customer complaint",
         "approved", "retracted"),
    ]  # fmt: skip
    assert all(e["details"]["origin"] in (None, "review") for e in entries)


# -- bad inputs --------------------------------------------------------------------------


async def _review_state(hub: Hub) -> list[Any]:
    return await _rows(
        hub,
        "SELECT (SELECT count(*) FROM audit_log) AS audit, (SELECT count(*) FROM decisions)"
        " AS decisions, (SELECT count(*) FROM feed_log) AS feed,"
        " (SELECT string_agg(id::text || state || coalesce(claimed_by::text, ''), ',')"
        "  FROM candidates) AS candidates",
    )


@pytest.fixture
async def one(hub: Hub) -> tuple[Node, str, str]:
    """A node, one pending mesh candidate, and a mesh reviewer token."""
    node = await hub.enroll()
    return node, await _candidate(node), await hub.reviewer_token()


def _routes(cid: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/v1/review/candidates", None),
        ("GET", f"/v1/review/candidates/{cid}", None),
        ("POST", f"/v1/review/candidates/{cid}/claim", {"lease_seconds": 60}),
        ("POST", "/v1/review/decisions", {"decisions": [_d(cid, "reject")]}),
    ]


async def test_review_routes_need_a_reviewer_token(hub: Hub, one: tuple[Node, str, str]) -> None:
    node, cid, _ = one
    before = await _review_state(hub)
    for method, path, body in _routes(cid):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        resp = await hub.client.request(method, path, data=data, headers=headers)
        assert resp.status == 401, (method, path)
        assert (await resp.json(content_type=None))["code"] == "unauthorized"
        for bad in ("Bearer hmr_not-a-token", "Basic abc", "Bearer "):
            resp = await hub.client.request(
                method, path, data=data, headers={**headers, "Authorization": bad}
            )
            assert resp.status == 401, (method, path, bad)
        # A node's signature is not a reviewer's token.
        assert_problem(await node.request(method, path, body), 401, "unauthorized")
        # An operator token is valid, but reviewing is a reviewer's act.
        assert_problem(await hub.call(method, path, body), 403, "forbidden")
    assert await _review_state(hub) == before


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0",
        "?limit=501",
        "?limit=abc",
        "?limit=-1",
        "?state=bogus",
        "?state=",
        "?order=newest",
        "?after=garbage",
        "?after=" + "A" * 34,
        "?after=" + "!" * 34,
        "?order=oldest&after=" + "A" * 33,
        "?min_reporters=-1",
        "?min_reporters=x",
        "?scenario=Bad Scenario",
        "?indicator=not-an-ip",
        "?indicator=" + "1" * 65,
        "?colour=blue",
        "?state=pending&state=approved",
    ],
)
async def test_queue_refuses_bad_parameters(
    hub: Hub, one: tuple[Node, str, str], query: str
) -> None:
    _, _, rev = one
    body = assert_problem(await _queue(hub, rev, query), 422, "validation_failed")
    assert body["errors"][0]["pointer"].startswith("/query/")


def _crafted_after(tag: bytes, number: int) -> str:
    """An `after` token shaped like the hub's, carrying any 64-bit sort key."""
    raw = tag + (number % 2**64).to_bytes(8, "big") + uuid.uuid4().bytes
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_MICROS_PAST_9999 = (datetime(9999, 12, 31, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // (
    timedelta(microseconds=1)
) + 86400 * 10**6


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?after=" + _crafted_after(b"r", 2**31), "reporter count"),
        ("?after=" + _crafted_after(b"r", 2**63 - 1), "reporter count"),
        ("?after=" + _crafted_after(b"r", 2**63), "reporter count"),  # -2**63 as signed
        ("?after=" + _crafted_after(b"r", -1), "reporter count"),
        ("?order=oldest&after=" + _crafted_after(b"o", _MICROS_PAST_9999), "time"),
        ("?order=oldest&after=" + _crafted_after(b"o", 2**63 - 1), "time"),
        ("?order=oldest&after=" + _crafted_after(b"o", -(2**63)), "time"),
    ],
)
async def test_an_after_token_out_of_range_is_refused_and_changes_nothing(
    hub: Hub, one: tuple[Node, str, str], query: str, words: str
) -> None:
    _, cid, rev = one
    before = await _review_state(hub)
    body = assert_problem(await _queue(hub, rev, query), 422, "validation_failed")
    assert body["errors"][0]["pointer"] == "/query/after"
    assert words in body["errors"][0]["detail"], body
    assert await _review_state(hub) == before
    assert _ids(await _queue(hub, rev)) == [cid]


async def test_the_largest_reporter_count_in_range_is_a_valid_after(
    hub: Hub, one: tuple[Node, str, str]
) -> None:
    _, cid, rev = one
    assert _ids(await _queue(hub, rev, "?after=" + _crafted_after(b"r", 2**31 - 1))) == [cid]
    assert _ids(await _queue(hub, rev, "?after=" + _crafted_after(b"r", 0))) == []


async def test_queue_limits_bounds_are_accepted(hub: Hub, one: tuple[Node, str, str]) -> None:
    _, cid, rev = one
    for query in ("?limit=1", "?limit=500", "?min_reporters=0", "?indicator=203.0.113.7"):
        assert _ids(await _queue(hub, rev, query)) == [cid]


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "%20"])
async def test_non_uuid_path_ids_are_not_found(
    hub: Hub, one: tuple[Node, str, str], bad_id: str
) -> None:
    _, _, rev = one
    before = await _review_state(hub)
    assert_problem(
        await hub.call("GET", f"/v1/review/candidates/{bad_id}", token=rev), 404, "not_found"
    )
    assert_problem(
        await hub.call("POST", f"/v1/review/candidates/{bad_id}/claim", {}, token=rev),
        404,
        "not_found",
    )
    assert await _review_state(hub) == before


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"lease_seconds": 29}, "/lease_seconds"),
        ({"lease_seconds": 3601}, "/lease_seconds"),
        ({"lease_seconds": "300"}, "/lease_seconds"),
        ({"lease_seconds": True}, "/lease_seconds"),
        ({"lease_seconds": 300, "for": "me"}, "/for"),
        ([], ""),
        ("300", ""),
    ],
)
async def test_claim_refuses_bad_bodies(
    hub: Hub, one: tuple[Node, str, str], body: Any, pointer: str
) -> None:
    _, cid, rev = one
    before = await _review_state(hub)
    reply = await hub.call("POST", f"/v1/review/candidates/{cid}/claim", body, token=rev)
    problem = assert_problem(reply, 422, "validation_failed")
    assert problem["errors"][0]["pointer"] == pointer
    assert await _review_state(hub) == before


def _decision_bodies(cid: str) -> list[tuple[Any, str]]:
    ok = _d(cid, "approve")
    return [
        ({}, "/decisions"),
        ({"decisions": []}, "/decisions"),
        ({"decisions": [ok] * 501}, "/decisions"),
        ({"decisions": ok}, "/decisions"),
        ({"decisions": [ok], "dry_run": True}, "/dry_run"),
        ({"decisions": [{**ok, "note": "x"}]}, "/decisions/0/note"),
        ({"decisions": [ok, {**ok, "action": "delete"}]}, "/decisions/1/action"),
        ({"decisions": [{**ok, "candidate_id": "not-a-uuid"}]}, "/decisions/0/candidate_id"),
        ({"decisions": [{**ok, "candidate_id": 7}]}, "/decisions/0/candidate_id"),
        ({"decisions": [{"candidate_id": cid, "action": "approve"}]}, "/decisions/0/reason"),
        ({"decisions": [{**ok, "reason": ""}]}, "/decisions/0/reason"),
        ({"decisions": [{**ok, "reason": "x" * 1025}]}, "/decisions/0/reason"),
        ({"decisions": [{**ok, "ttl_seconds": 299}]}, "/decisions/0/ttl_seconds"),
        ({"decisions": [{**ok, "ttl_seconds": 2592001}]}, "/decisions/0/ttl_seconds"),
        ({"decisions": [{**ok, "ttl_seconds": "600"}]}, "/decisions/0/ttl_seconds"),
        ({"decisions": [_d(cid, "reject", ttl_seconds=600)]}, "/decisions/0/ttl_seconds"),
        ([ok], ""),
    ]


@pytest.mark.parametrize("case", range(17))
async def test_decisions_refuse_bad_bodies(hub: Hub, one: tuple[Node, str, str], case: int) -> None:
    _, cid, rev = one
    cases = _decision_bodies(cid)
    assert len(cases) == 17
    body, pointer = cases[case]
    before = await _review_state(hub)
    reply = await hub.call("POST", "/v1/review/decisions", body, token=rev)
    problem = assert_problem(reply, 422, "validation_failed")
    assert problem["errors"][0]["pointer"] == pointer
    assert await _review_state(hub) == before


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b'{"decisions": [', "application/json", 400, "invalid_json"),
        (b'{"decisions": [], "decisions": []}', "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "invalid_json"),
        (b'{"decisions": []}', "text/plain", 415, "unsupported_media_type"),
    ],
)
async def test_malformed_bodies(
    hub: Hub, one: tuple[Node, str, str], raw: bytes, content_type: str, status: int, code: str
) -> None:
    _, cid, rev = one
    before = await _review_state(hub)
    for path in ("/v1/review/decisions", f"/v1/review/candidates/{cid}/claim"):
        if path.endswith("/claim") and not raw:
            continue  # an empty claim body is the default lease
        reply = await hub.call(
            "POST", path, raw=raw, token=rev, headers={"Content-Type": content_type}
        )
        assert_problem(reply, status, code)
    assert await _review_state(hub) == before


async def test_a_batch_of_500_is_served(hub: Hub, one: tuple[Node, str, str]) -> None:
    _, cid, rev = one
    unknown = [str(uuid.uuid4()) for _ in range(499)]
    results = await _decide(hub, rev, *(_d(c, "approve") for c in [*unknown, cid]))
    assert [r["status"] for r in results] == ["refused"] * 499 + ["applied"]
    assert {r["error"]["code"] for r in results[:-1]} == {"not_found"}
