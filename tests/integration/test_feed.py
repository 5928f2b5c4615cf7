"""The feed (PROTOCOL.md section 8): snapshot, deltas, visibility, cursors, long-poll,
provenance. Real hub, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from honeymesh_client.protocol.dsse import parse_envelope, verify_envelope
from honeymesh_client.protocol.signing import sign_request
from honeymesh_hub import state
from honeymesh_hub.store import feed as feed_store
from tests.support import Hub, Node, approve, sequenced, trusted


async def pull_all(
    node: Node, cursor: str | None = None, limit: int = 1000
) -> tuple[dict[str, Any], str]:
    """Follow pages until `more` is false; return the resulting set and the cursor."""
    active: dict[str, Any] = {}
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        reply = await node.request("GET", "/v1/feed" + query)
        assert reply.status == 200, reply.body
        page = reply.body
        if page["reset"]:
            active.clear()
        for item in page["removed"]:
            active.pop(item["id"], None)
        for item in page["added"]:
            active[item["id"]] = item
        cursor = page["cursor"]
        if not page["more"]:
            return active, cursor


async def test_snapshot_pages_and_visibility_across_three_tenants(hub: Hub) -> None:
    ta, tb, tc = await hub.tenant(), await hub.tenant(), await hub.tenant("enterprise")
    a, b, c = await trusted(hub, ta), await trusted(hub, tb), await trusted(hub, tc)
    mesh = [await approve(a, f"198.51.100.{i}") for i in range(5)]
    own_b = await approve(b, "203.0.113.1", share="tenant")
    own_c = await approve(c, "203.0.113.2", share="tenant")
    seen_a, _ = await pull_all(a, limit=2)
    assert set(seen_a) == set(mesh)
    seen_b, _ = await pull_all(b, limit=4)
    assert set(seen_b) == {*mesh, own_b}
    seen_c, _ = await pull_all(c)
    assert set(seen_c) == {*mesh, own_c}
    first = (await a.request("GET", "/v1/feed?limit=2")).body
    assert (first["reset"], first["more"], len(first["added"])) == (True, True, 2)
    second = (await a.request("GET", f"/v1/feed?limit=2&cursor={first['cursor']}")).body
    assert (second["reset"], second["more"]) == (False, True)
    entry = seen_b[own_b]
    assert entry["indicator"] == {"type": "ip", "value": "203.0.113.1"}
    assert entry["origin"] == "trusted" and entry["scope"] == "tenant"
    assert set(entry) >= {
        "id",
        "indicator",
        "scope",
        "scenarios",
        "confidence",
        "reporters",
        "approved_at",
        "expires_at",
        "origin",
    }


async def test_deltas_after_approve_and_retract(hub: Hub) -> None:
    node = await trusted(hub)
    reader = await hub.enroll()
    first = await approve(node, "198.51.100.1")
    active, cursor = await pull_all(reader)
    assert set(active) == {first}
    second = await approve(node, "198.51.100.2")
    reply = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "198.51.100.1", "reason": "x"})
    assert reply.status == 201
    page = (await reader.request("GET", f"/v1/feed?cursor={cursor}")).body
    assert page["reset"] is False
    assert [i["id"] for i in page["added"]] == [second]
    [removed] = page["removed"]
    assert {k: removed[k] for k in ("id", "indicator", "reason")} == {
        "id": first,
        "indicator": {"type": "ip", "value": "198.51.100.1"},
        "reason": "retracted",
    }
    # Every event carries its commit time and its place in the log (8 r2, 15 r2).
    assert set(removed) == {"id", "indicator", "reason", "time", "leaf"}
    assert removed["leaf"]["log"] == "mesh" and set(page["checkpoints"]) == {"mesh"}
    empty = (await reader.request("GET", f"/v1/feed?cursor={page['cursor']}")).body
    assert (empty["added"], empty["removed"], empty["more"]) == ([], [], False)


async def test_an_id_appears_once_per_page(hub: Hub) -> None:
    node = await trusted(hub)
    reader = await hub.enroll()
    _, cursor = await pull_all(reader)
    cid = await approve(node, "198.51.100.7")
    await hub.call("POST", "/v1/admin/allowlist", {"cidr": "198.51.100.7", "reason": "x"})
    # The page ends before the id would come twice: the approval, then the retraction,
    # each as it stands at its page's cursor; every event (every leaf) is served.
    page = (await reader.request("GET", f"/v1/feed?cursor={cursor}")).body
    assert ([a["id"] for a in page["added"]], page["removed"], page["more"]) == ([cid], [], True)
    page = (await reader.request("GET", f"/v1/feed?cursor={page['cursor']}")).body
    assert page["added"] == []
    assert [r["id"] for r in page["removed"]] == [cid]


async def test_cursor_forged_altered_or_borrowed(hub: Hub) -> None:
    a, b = await hub.enroll(), await hub.enroll()
    _, cursor = await pull_all(a)
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    for bad in (tampered, "not-a-cursor", "A" * 40):
        reply = await a.request("GET", f"/v1/feed?cursor={bad}")
        assert (reply.status, reply.code) == (400, "validation_failed"), bad
    borrowed = await b.request("GET", f"/v1/feed?cursor={cursor}")
    assert (borrowed.status, borrowed.code) == (400, "validation_failed")


async def test_compacted_cursor_answers_410(hub: Hub) -> None:
    node = await trusted(hub)
    reader = await hub.enroll()
    _, cursor = await pull_all(reader)
    await approve(node, "198.51.100.3")
    conn = await asyncpg.connect(hub.database_url)
    try:
        await sequenced(hub)  # compaction keeps what is not sequenced yet
        assert await feed_store.compact(conn, datetime.max.replace(tzinfo=UTC)) == 1
    finally:
        await conn.close()
    reply = await reader.request("GET", f"/v1/feed?cursor={cursor}")
    assert (reply.status, reply.code) == (410, "cursor_expired")
    active, _ = await pull_all(reader)
    assert len(active) == 1


async def test_a_rendered_snapshot_page_outlives_compaction_but_its_delta_does_not(
    hub: Hub,
) -> None:
    """A snapshot page already rendered as of P is served without reading the
    compaction watermark (services/feed.py): it is that page whatever was compacted
    since. The delta its last page leads to checks the watermark, so a node that
    follows it past a compaction is told to start again, never shown a gap."""
    node = await trusted(hub)
    for value in ("198.51.100.4", "198.51.100.5"):
        await approve(node, value)
    tenant = await hub.tenant()
    first, second = await hub.enroll(tenant), await hub.enroll(tenant)
    active, _ = await pull_all(first, limit=1)  # renders both pages as of P
    assert len(active) == 2
    page = (await second.request("GET", "/v1/feed?limit=1")).body
    await approve(node, "198.51.100.6")  # after P: compacting it leaves P behind
    conn = await asyncpg.connect(hub.database_url)
    try:
        await sequenced(hub)
        assert await feed_store.compact(conn, datetime.max.replace(tzinfo=UTC)) == 3
    finally:
        await conn.close()
    reply = await second.request("GET", f"/v1/feed?limit=1&cursor={page['cursor']}")
    assert reply.status == 200, reply.body
    assert reply.body["more"] is False and len(reply.body["added"]) == 1
    reply = await second.request("GET", f"/v1/feed?limit=1&cursor={reply.body['cursor']}")
    assert (reply.status, reply.code) == (410, "cursor_expired")


async def test_long_poll_wakes_on_approval(hub: Hub) -> None:
    node = await trusted(hub)
    reader = await hub.enroll()
    _, cursor = await pull_all(reader)
    waiting = asyncio.create_task(reader.request("GET", f"/v1/feed?wait=30&cursor={cursor}"))
    notifier = hub.client.app[state.NOTIFIER]
    await asyncio.wait_for(notifier.until_waiting(1), 10)
    cid = await approve(node, "198.51.100.9")
    reply = await asyncio.wait_for(waiting, 10)
    assert [i["id"] for i in reply.body["added"]] == [cid]


async def test_wait_runs_out_with_empty_page_and_same_cursor(hub: Hub) -> None:
    reader = await hub.enroll()
    _, cursor = await pull_all(reader)
    reply = await reader.request("GET", f"/v1/feed?wait=1&cursor={cursor}")
    assert reply.status == 200
    assert (reply.body["cursor"], reply.body["added"], reply.body["removed"]) == (cursor, [], [])


async def test_third_waiting_request_is_refused(hub: Hub) -> None:
    reader = await hub.enroll()
    _, cursor = await pull_all(reader)
    notifier = hub.client.app[state.NOTIFIER]
    held = [
        asyncio.create_task(reader.request("GET", f"/v1/feed?wait=20&cursor={cursor}"))
        for _ in range(2)
    ]
    await asyncio.wait_for(notifier.until_waiting(2), 10)
    third = await reader.request("GET", f"/v1/feed?wait=20&cursor={cursor}")
    assert (third.status, third.code) == (429, "rate_limited")
    assert "Retry-After" in third.headers
    notifier.wake_all()
    for task in held:
        assert (await task).status == 200


async def test_provenance_verified_by_another_tenant(hub: Hub) -> None:
    publisher = await trusted(hub)
    other = await hub.enroll()
    cid = await approve(publisher, "198.51.100.4")
    reply = await other.request("GET", f"/v1/decisions/{cid}/provenance")
    assert reply.status == 200, reply.body
    [item] = reply.body["signals"]
    key = await other.request("GET", f"/v1/keys/{item['keyid']}")
    public = base64.b64decode(key.body["public_key"])
    payload = json.loads(verify_envelope(parse_envelope(item["envelope"]), public))
    assert payload["node_id"] == key.body["node_id"] == publisher.node_id
    assert payload["indicator"]["value"] == reply.body["indicator"]["value"]


async def test_provenance_refused_for_invisible_decision(hub: Hub) -> None:
    publisher = await trusted(hub)
    other = await hub.enroll()
    cid = await approve(publisher, "203.0.113.4", share="tenant")
    reply = await other.request("GET", f"/v1/decisions/{cid}/provenance")
    assert (reply.status, reply.code) == (404, "not_found")
    feed, _ = await pull_all(other)
    assert cid not in feed


async def test_community_tenant_cannot_pull(hub: Hub) -> None:
    node = await hub.enroll(await hub.tenant("community"))
    reply = await node.request("GET", "/v1/feed")
    assert (reply.status, reply.code) == (403, "not_entitled")


async def test_bad_feed_parameters(hub: Hub) -> None:
    node = await hub.enroll()
    for query in ("limit=0", "limit=5001", "wait=61", "wait=x", "limit=-1"):
        reply = await node.request("GET", f"/v1/feed?{query}")
        assert (reply.status, reply.code) == (422, "validation_failed"), query


async def test_pull_rate_limit_headers(hub: Hub) -> None:
    node = await hub.enroll(await hub.tenant(limits={"pull_per_minute": 2}))
    first = await node.request("GET", "/v1/feed")
    assert first.headers["RateLimit-Policy"] == '"pull";q=2;w=60'
    await node.request("GET", "/v1/feed")
    third = await node.request("GET", "/v1/feed")
    assert (third.status, third.code) == (429, "rate_limited")


async def test_snapshot_and_delta_entries_are_identical(hub: Hub) -> None:
    """Snapshot entries are built by PostgreSQL, delta entries by views.feed_added:
    a client must not be able to tell them apart."""
    tenant = await hub.tenant()
    node = await trusted(hub, tenant)
    follower = await hub.enroll(tenant)
    _, cursor = await pull_all(follower)
    mesh = await approve(node, "198.51.100.20")
    own = await approve(node, "198.51.100.21", share="tenant")
    delta = (await follower.request("GET", f"/v1/feed?cursor={cursor}")).body["added"]
    snapshot, _ = await pull_all(await hub.enroll(tenant))
    assert {e["id"]: e for e in delta} == {mesh: snapshot[mesh], own: snapshot[own]}


@pytest.mark.parametrize(
    "narrowing",
    [
        [{"status": "suspended"}, {"status": "active"}],
        [{"plan": "community"}, {"plan": "pro"}],
        [{"expires_at": "2000-01-01T00:00:00Z"}, {"expires_at": None}],
    ],
    ids=["suspended-restored", "lost-mesh", "lapsed-renewed"],
)
async def test_a_cursor_from_before_visibility_shrank_gets_a_snapshot(
    hub: Hub, narrowing: list[dict[str, Any]]
) -> None:
    """PROTOCOL.md 8 r2: the next answer with a cursor is a snapshot of what it may see."""
    source = await trusted(hub)
    tenant = await hub.tenant()
    reader = await hub.enroll(tenant)
    mesh = await approve(source, "198.51.100.30")
    active, cursor = await pull_all(reader)
    assert set(active) == {mesh}
    for change in narrowing:
        reply = await hub.call("PATCH", f"/v1/admin/tenants/{tenant}", change)
        assert reply.status == 200, reply.body
    page = (await reader.request("GET", f"/v1/feed?cursor={cursor}")).body
    assert page["reset"] is True
    assert [e["id"] for e in page["added"]] == [mesh]
    # The new cursor is of the new epoch: deltas again.
    later = (await reader.request("GET", f"/v1/feed?cursor={page['cursor']}")).body
    assert (later["reset"], later["added"], later["removed"]) == (False, [], [])


async def test_a_change_that_takes_nothing_away_keeps_the_cursor(hub: Hub) -> None:
    tenant = await hub.tenant()
    reader = await hub.enroll(tenant)
    _, cursor = await pull_all(reader)
    for change in ({"limits": {"pull_per_minute": 500}}, {"plan": "enterprise"}):
        assert (await hub.call("PATCH", f"/v1/admin/tenants/{tenant}", change)).status == 200
    page = (await reader.request("GET", f"/v1/feed?cursor={cursor}")).body
    assert page["reset"] is False


async def raw_get(node: Node, path: str, encoding: str) -> tuple[int, Any, bytes]:
    """A signed GET whose body comes back as sent (not decompressed by the client)."""
    target, _, query = path.partition("?")
    headers = sign_request(node.key, "GET", target, query, None, created=int(node.hub.now()))
    headers["Accept-Encoding"] = encoding
    resp = await node.hub.client.request("GET", path, headers=headers, auto_decompress=False)
    return resp.status, resp.headers, await resp.read()


async def test_nodes_of_a_tenant_share_snapshot_pages_with_their_own_cursors(hub: Hub) -> None:
    tenant = await hub.tenant()
    source = await trusted(hub, tenant)
    for i in range(5):
        await approve(source, f"198.51.100.{40 + i}")
    await approve(source, "203.0.113.40", share="tenant")
    a, b = await hub.enroll(tenant), await hub.enroll(tenant)
    cache = hub.client.app[state.SNAPSHOTS]
    pages: dict[str, list[dict[str, Any]]] = {}
    cursors: dict[str, list[str]] = {}
    # As nodes restarting together do: each takes its first page, then they go on.
    for node in (a, b):
        pages[node.node_id], cursors[node.node_id] = [], []
    for _ in range(3):
        for node in (a, b):
            cursor = cursors[node.node_id][-1] if cursors[node.node_id] else ""
            reply = await node.request("GET", f"/v1/feed?limit=2&cursor={cursor}")
            assert reply.status == 200, reply.body
            pages[node.node_id].append(reply.body)
            cursors[node.node_id].append(reply.body["cursor"])
    assert [p["more"] for p in pages[a.node_id]] == [True, True, False]
    first, second = pages[a.node_id], pages[b.node_id]
    assert len(first) == 3
    strip = [{k: v for k, v in p.items() if k != "cursor"} for p in first]
    assert strip == [{k: v for k, v in p.items() if k != "cursor"} for p in second]
    assert [p["reset"] for p in first] == [True, False, False]
    assert set(first[0]) == {"cursor", "more", "reset", "added", "removed", "checkpoints"}
    # Later pages came from the shared rendering; each cursor is the node's own.
    assert cache.hits >= 2
    assert set(cursors[a.node_id]).isdisjoint(cursors[b.node_id])
    borrowed = await b.request("GET", f"/v1/feed?limit=2&cursor={cursors[a.node_id][0]}")
    assert (borrowed.status, borrowed.code) == (400, "validation_failed")
    # Both end at the same set and follow on with deltas.
    for node in (a, b):
        last = cursors[node.node_id][-1]
        page = (await node.request("GET", f"/v1/feed?cursor={last}")).body
        assert (page["reset"], page["added"], page["removed"]) == (False, [], [])


async def test_a_cached_page_never_reaches_a_node_without_its_visibility(hub: Hub) -> None:
    ta, tb = await hub.tenant(), await hub.tenant()
    source = await trusted(hub, ta)
    mesh = [await approve(source, f"198.51.100.{50 + i}") for i in range(3)]
    own = [await approve(source, f"203.0.113.{50 + i}", share="tenant") for i in range(3)]
    reader_a, reader_b = await hub.enroll(ta), await hub.enroll(tb)
    seen_a, _ = await pull_all(reader_a, limit=1)
    assert set(seen_a) == {*mesh, *own}
    # Same limit, same boundary (nothing ran in between), positions the same ids.
    seen_b, _ = await pull_all(reader_b, limit=1)
    assert set(seen_b) == set(mesh)
    cache = hub.client.app[state.SNAPSHOTS]
    assert {key[0] for key in cache._entries} == {
        tuple(sorted([ta, "mesh"])),
        tuple(sorted([tb, "mesh"])),
    }


async def test_gzip_answers_decompress_to_the_identity_body(hub: Hub) -> None:
    tenant = await hub.tenant()
    source = await trusted(hub, tenant)
    for i in range(30):
        await approve(source, f"198.51.100.{100 + i}")
    reader = await hub.enroll(tenant)
    cursor = ""
    for _ in range(3):
        path = f"/v1/feed?limit=12&cursor={cursor}"
        status, headers, plain = await raw_get(reader, path, "identity")
        assert status == 200 and "Content-Encoding" not in headers
        assert headers["Vary"] == "Accept-Encoding"
        status, headers, packed = await raw_get(reader, path, "gzip, deflate")
        assert status == 200 and headers["Content-Encoding"] == "gzip", headers
        assert headers["Vary"] == "Accept-Encoding"
        # One gzip member, not a concatenation: any decoder reads it whole.
        unpack = zlib.decompressobj(16 + zlib.MAX_WBITS)
        unpacked = unpack.decompress(packed)
        assert unpack.eof and not unpack.unused_data and gzip.decompress(packed) == unpacked
        status, _, refused = await raw_get(reader, path, "gzip;q=0, identity")
        if cursor:
            # Same cursor, same page: byte for byte the identity body.
            assert unpacked == plain == refused
        else:
            # A first page's cursor holds the boundary of its request: the rest is equal.
            strip = [
                {k: v for k, v in json.loads(b).items() if k != "cursor"}
                for b in (plain, unpacked, refused)
            ]
            assert strip[0] == strip[1] == strip[2]
        cursor = json.loads(plain)["cursor"]
    assert json.loads(plain)["more"] is False
    # A delta page large enough is gzipped too, whole.
    for i in range(12):
        await approve(source, f"198.51.100.{200 + i}")
    path = f"/v1/feed?cursor={cursor}"
    _, _, plain = await raw_get(reader, path, "identity")
    _, headers, packed = await raw_get(reader, path, "gzip")
    assert headers["Content-Encoding"] == "gzip"
    # (its cursor is the xmin of its read, which moves between requests)
    unpacked, expected = json.loads(gzip.decompress(packed)), json.loads(plain)
    assert unpacked.pop("cursor") and expected.pop("cursor") and unpacked == expected
    assert len(expected["added"]) == 12


async def test_a_shared_first_page_is_never_older_than_the_request(hub: Hub) -> None:
    tenant = await hub.tenant()
    source = await trusted(hub, tenant)
    first = await approve(source, "198.51.100.60")
    a, b, c = [await hub.enroll(tenant) for _ in range(3)]
    cache = hub.client.app[state.SNAPSHOTS]
    page_a = (await a.request("GET", "/v1/feed?limit=3")).body
    hits = cache.hits
    page_b = (await b.request("GET", "/v1/feed?limit=3")).body
    assert cache.hits == hits + 1  # nothing changed: the same rendering
    assert page_a["added"] == page_b["added"] and [e["id"] for e in page_a["added"]] == [first]
    second = await approve(source, "198.51.100.61")
    page_c = (await c.request("GET", "/v1/feed?limit=3")).body
    assert {e["id"] for e in page_c["added"]} == {first, second}
    # And b, whose boundary was the shared page's, gets the change as a delta.
    delta = (await b.request("GET", f"/v1/feed?cursor={page_b['cursor']}")).body
    assert [e["id"] for e in delta["added"]] == [second]
