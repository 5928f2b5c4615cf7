"""The feed across hub processes (PROTOCOL.md section 8): no decision is ever skipped
while approvals and retractions commit concurrently on several replicas, and a
long-poll on one replica wakes for a commit on another."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from honeymesh_client.protocol.dsse import build_envelope

from .conftest import HubFactory
from .remote import Admin, Node

HIGH_LIMITS = {
    "publish_per_minute": 100000,
    "tenant_publish_per_minute": 100000,
    "pull_per_minute": 100000,
    "trusted_approvals_per_day": 100000,
}


async def _node(admin: Admin, base: str, trusted: bool) -> Node:
    node = await admin.enroll_node(base)
    reply = await admin.call(
        base, "PATCH", f"/v1/admin/tenants/{node.tenant_id}", {"limits": HIGH_LIMITS}
    )
    assert reply.status == 200, reply.body
    if trusted:
        reply = await admin.call(
            base, "PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": True}
        )
        assert reply.status == 200, reply.body
    return node


def _envelope(node: Node, value: str) -> dict[str, Any]:
    payload = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "node_id": node.node_id,
        "observed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "indicator": {"type": "ip", "value": value},
        "scenario": "ssh/brute",
        "action": "blocked",
        "mode": "enforce",
        "confidence": 95,
        "ttl_seconds": 3600,
        "share": "mesh",
    }
    return build_envelope(node.key, json.dumps(payload).encode())


class Follower:
    """A node following cursors with long-polls, applying pages as a client would."""

    def __init__(self, node: Node, base: str) -> None:
        self.node, self.base = node, base
        self.active: dict[str, Any] = {}
        self.cursor: str | None = None
        self.pages = 0

    async def step(self, wait: int) -> bool:
        query = "/v1/feed?limit=200" + (f"&cursor={self.cursor}&wait={wait}" if self.cursor else "")
        reply = await self.node.request(self.base, "GET", query)
        assert reply.status == 200, reply.body
        page = reply.body
        if page["reset"]:
            self.active.clear()
        ids = [i["id"] for i in page["added"]] + [i["id"] for i in page["removed"]]
        assert len(ids) == len(set(ids)), "an id appeared twice in one page"
        for item in page["removed"]:
            self.active.pop(item["id"], None)
        for item in page["added"]:
            self.active[item["id"]] = item
        self.cursor = page["cursor"]
        self.pages += 1
        return bool(page["added"] or page["removed"] or page["more"])

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step(wait=1)
        while await self.step(wait=0):  # drain what the last writes left
            pass


async def test_followers_end_with_exactly_the_active_set(
    hub_process_factory: HubFactory, admin: Admin, hub_env_vars: dict[str, str]
) -> None:
    hubs = [hub_process_factory(), hub_process_factory()]
    bases = [h.base_url for h in hubs]
    publishers = [await _node(admin, bases[i % 2], trusted=True) for i in range(4)]
    readers = [await _node(admin, bases[i % 2], trusted=False) for i in range(3)]
    followers = [Follower(r, bases[i % 2]) for i, r in enumerate(readers)]
    stop = asyncio.Event()
    following = [asyncio.create_task(f.follow(stop)) for f in followers]

    async def publish_range(p: int) -> None:
        node = publishers[p]
        for batch in range(30):
            values = [f"203.{p}.{batch}.{i}" for i in range(20)]
            body = {"envelopes": [_envelope(node, v) for v in values]}
            reply = await node.request(bases[batch % 2], "POST", "/v1/signals", body)
            assert reply.status == 202, reply.body
            # approved, or rejected where a concurrent allowlist entry got there first
            states = {r["candidate_state"] for r in reply.body["results"]}
            assert states <= {"approved", "rejected"}, reply.body

    async def retract_some() -> None:
        for i in range(10):
            reply = await admin.call(
                bases[i % 2],
                "POST",
                "/v1/admin/allowlist",
                {"cidr": f"203.{i % 4}.{i}.0/28", "reason": "drill"},
            )
            assert reply.status == 201, reply.body

    await asyncio.gather(*(publish_range(p) for p in range(4)), retract_some())
    stop.set()
    await asyncio.wait_for(asyncio.gather(*following), 60)

    conn = await asyncpg.connect(hub_env_vars["HONEYMESH_DATABASE_URL"])
    try:
        rows = await conn.fetch(
            "SELECT id, expires_at FROM candidates WHERE state = 'approved' AND scope_key = 'mesh'"
        )
        events = await conn.fetchval("SELECT count(*) FROM feed_log")
    finally:
        await conn.close()
    expected = {str(r["id"]) for r in rows}
    assert 4 * 30 * 20 - 10 * 16 <= len(expected) < 4 * 30 * 20
    assert events >= 2000
    for follower in followers:
        assert set(follower.active) == expected


async def test_long_poll_wakes_across_processes_within_a_second(
    hub_process_factory: HubFactory, admin: Admin
) -> None:
    a, b = hub_process_factory(), hub_process_factory()
    publisher = await _node(admin, a.base_url, trusted=True)
    reader = await _node(admin, b.base_url, trusted=False)
    follower = Follower(reader, b.base_url)
    await follower.step(wait=0)
    waiting = asyncio.create_task(follower.step(wait=30))
    # The wait is registered once the request has reached the hub: let it get there by
    # sending the approval only after a request through the same hub has been served.
    await reader.request(b.base_url, "GET", "/v1/nodes/self")
    body = {"envelopes": [_envelope(publisher, "203.9.9.9")]}
    reply = await publisher.request(a.base_url, "POST", "/v1/signals", body)
    assert reply.status == 202
    committed = time.monotonic()
    assert await asyncio.wait_for(waiting, 30)
    assert time.monotonic() - committed < 1.0
    assert len(follower.active) == 1
