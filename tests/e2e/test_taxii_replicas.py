"""TAXII's `date_added` across hub processes (PROTOCOL.md 14 r2): two hubs approve and
retract concurrently while a reader resumes, alternately on each, from the last
`X-TAXII-Date-Added-Last` it saw (OpenCTI's way); at the end it holds every decision
exactly once, at its latest version, and never saw a version twice."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from .conftest import HubFactory
from .remote import Admin, send
from .test_feed_replicas import HIGH_LIMITS, _envelope, _node

TAXII = "application/taxii+json;version=2.1"


class Reader:
    def __init__(self, admin: Admin, key: str, bases: list[str], collection: str) -> None:
        self.admin, self.key, self.bases, self.collection = admin, key, bases, collection
        self.last: str | None = None
        self.latest: dict[str, dict[str, Any]] = {}
        self.seen: set[tuple[str, str]] = set()
        self.polls = 0

    async def poll(self) -> int:
        """One resumption: every page from the last header on; the objects it got."""
        base = self.bases[self.polls % len(self.bases)]
        self.polls += 1
        path = f"{base}/taxii2/honeymesh/collections/{self.collection}/objects/?limit=50"
        url = path + (f"&added_after={self.last}" if self.last else "")
        got = 0
        while True:
            reply = await send(
                self.admin.session,
                "GET",
                url,
                {"Authorization": f"Token {self.key}", "Accept": TAXII},
            )
            assert reply.status == 200, reply.raw
            assert reply.headers["Content-Type"] == TAXII
            page = reply.body
            for obj in page["objects"]:
                version = (obj["id"], obj["modified"])
                assert version not in self.seen, f"served twice: {version}"
                self.seen.add(version)
                if obj["type"] == "indicator":
                    self.latest[obj["id"]] = obj
            got += len(page["objects"])
            if page["objects"]:
                last = reply.headers["X-TAXII-Date-Added-Last"]
                assert self.last is None or last > self.last
                self.last = last
            if not page["more"]:
                return got
            # OpenCTI follows `next` without repeating its filters.
            url = f"{path}&next={page['next']}"

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            await asyncio.sleep(0.05)  # a TAXII client polls; there is no event to await


async def test_a_reader_resuming_from_the_last_header_misses_nothing(
    hub_process_factory: HubFactory, admin: Admin, hub_env_vars: dict[str, str]
) -> None:
    hubs = [hub_process_factory(), hub_process_factory()]
    bases = [h.base_url for h in hubs]
    publishers = [await _node(admin, bases[i % 2], trusted=True) for i in range(4)]
    reader_node = await _node(admin, bases[0], trusted=False)
    made = await admin.call(
        bases[0], "POST", f"/v1/admin/tenants/{reader_node.tenant_id}/reader-keys", {"name": "r"}
    )
    assert made.status == 201, made.body
    collections = await send(
        admin.session,
        "GET",
        f"{bases[1]}/taxii2/honeymesh/collections/",
        {"Authorization": f"Bearer {made.body['key']}"},
    )
    [mesh] = [c["id"] for c in collections.body["collections"] if c["id"] != reader_node.tenant_id]
    reader = Reader(admin, made.body["key"], bases, mesh)
    stop = asyncio.Event()
    following = asyncio.create_task(reader.follow(stop))

    async def publish_range(p: int, batches: range) -> None:
        node = publishers[p]
        for batch in batches:
            values = [f"198.{p}.{batch}.{i}" for i in range(20)]
            body = {"envelopes": [_envelope(node, v) for v in values]}
            reply = await node.request(bases[batch % 2], "POST", "/v1/signals", body)
            assert reply.status == 202, reply.body

    async def retract_some() -> None:
        for i in range(6):
            reply = await admin.call(
                bases[i % 2],
                "POST",
                "/v1/admin/allowlist",
                {"cidr": f"198.{i % 4}.{i}.0/29", "reason": "drill"},
            )
            assert reply.status == 201, reply.body

    await asyncio.gather(*(publish_range(p, range(8)) for p in range(4)))
    # Retractions of what the first half approved, while the second half publishes.
    await asyncio.gather(*(publish_range(p, range(8, 15)) for p in range(4)), retract_some())
    conn = await asyncpg.connect(hub_env_vars["HONEYMESH_DATABASE_URL"])
    try:
        # Every event sequenced (the hubs do it within a second of each commit).
        for _ in range(400):
            pending = await conn.fetchval(
                "SELECT count(*) FROM feed_log f WHERE (f.xid, f.seq) >"
                " (SELECT xid, seq FROM sequencer_state)"
            )
            if pending == 0:
                break
            await asyncio.sleep(0.025)
        assert pending == 0
        rows = await conn.fetch(
            "SELECT c.id, c.state FROM candidates c WHERE c.scope_key = 'mesh'"
            " AND EXISTS (SELECT 1 FROM sequenced s WHERE s.candidate_id = c.id)"
        )
    finally:
        await conn.close()
    stop.set()
    await asyncio.wait_for(following, 60)
    while await reader.poll():  # what came after the last round
        pass
    expected = {f"indicator--{r['id']}": r["state"] for r in rows}
    assert len(expected) == 4 * 15 * 20
    assert set(reader.latest) == set(expected)
    for object_id, state in expected.items():
        assert reader.latest[object_id].get("revoked", False) == (state != "approved"), object_id
    assert sum(1 for s in expected.values() if s != "approved") == 6 * 8
    assert HIGH_LIMITS["pull_per_minute"] >= reader.polls
