"""Publishing against real hub processes: 202 means committed, and limits are shared.

PROTOCOL.md section 6: "202 means committed to the database: a hub that crashes
after answering loses nothing." Section 9: publish limits are counted across all
replicas, and a 429 carries Retry-After and the RateLimit fields.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg

from honeymesh_client.protocol.dsse import build_envelope

from .conftest import HubFactory
from .remote import Admin, Node

STORM_CLIENTS = 6
ENVELOPES_PER_REQUEST = 3
KILL_AFTER_ACCEPTED = 120  # acknowledged signals seen before the SIGKILL is sent
STORM_DEADLINE = 15.0
LIMITS_PROPAGATION = 5.0  # PROTOCOL.md section 4: a PATCH reaches every replica in 5 s


def _signal(node: Node) -> dict[str, Any]:
    """A valid, distinct signal of `node` (documentation addresses are accepted)."""
    return {
        "v": 1,
        "id": str(uuid.uuid4()),
        "node_id": node.node_id,
        "observed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "indicator": {"type": "ip", "value": f"203.0.113.{random.randrange(1, 255)}"},
        "scenario": "ssh/brute-force",
        "action": "blocked",
        "mode": "enforce",
        "confidence": 60,
        "ttl_seconds": 3600,
        "share": "mesh",
    }


def _publish_body(node: Node, count: int) -> tuple[list[str], dict[str, Any]]:
    signals = [_signal(node) for _ in range(count)]
    envelopes = [build_envelope(node.key, json.dumps(s).encode()) for s in signals]
    return [s["id"] for s in signals], {"envelopes": envelopes}


async def test_sigkill_during_publish_storm_loses_no_acknowledged_signal(
    hub_process_factory: HubFactory, admin: Admin, database_url: str
) -> None:
    hub = hub_process_factory(workers=1)
    nodes = [await admin.enroll_node(hub.base_url, name=f"storm-{i}") for i in range(STORM_CLIENTS)]

    accepted: collections.Counter[str] = collections.Counter()  # signal id -> 202 accepted seen
    owner: dict[str, str] = {}
    other_results: collections.Counter[str] = collections.Counter()
    killed = asyncio.Event()
    in_flight = 0
    in_flight_at_kill = -1
    failed_after_kill = 0

    async def client(node: Node) -> None:
        nonlocal in_flight, in_flight_at_kill, failed_after_kill
        while not killed.is_set():
            ids, body = _publish_body(node, ENVELOPES_PER_REQUEST)
            signed = node.sign("POST", "/v1/signals", body)
            in_flight += 1
            try:
                reply = await node.send(hub.base_url, signed)
            except (aiohttp.ClientError, OSError):
                assert killed.is_set(), "a request failed before the hub was killed"
                failed_after_kill += 1
                return
            finally:
                in_flight -= 1
            assert reply.status == 202, (reply.status, reply.body)
            for sent_id, result in zip(ids, reply.body["results"], strict=True):
                assert result["id"] == sent_id
                if result["status"] == "accepted":
                    accepted[sent_id] += 1
                    owner[sent_id] = node.node_id
                else:
                    other_results[result["status"]] += 1
            if not killed.is_set() and sum(accepted.values()) >= KILL_AFTER_ACCEPTED:
                # Kill while the other clients' requests are on their way.
                in_flight_at_kill = in_flight
                hub.signal(signal.SIGKILL)
                killed.set()

    await asyncio.wait_for(asyncio.gather(*(client(n) for n in nodes)), timeout=STORM_DEADLINE)

    assert killed.is_set(), f"only {sum(accepted.values())} signals were acknowledged"
    assert hub.wait_exit() == -signal.SIGKILL, hub.output()
    assert in_flight_at_kill >= 1, "the kill came when no request was in flight"
    assert failed_after_kill >= 1, "no request was cut off by the kill"
    assert not other_results, other_results  # every signal was new and valid
    assert set(accepted.values()) == {1}, "a signal was acknowledged twice"
    assert len(accepted) >= KILL_AFTER_ACCEPTED

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT signal_uuid, node_id FROM signals WHERE signal_uuid = any($1::uuid[])",
            [uuid.UUID(i) for i in accepted],
        )
    finally:
        await conn.close()
    stored = {str(r["signal_uuid"]): str(r["node_id"]) for r in rows}
    missing = sorted(set(accepted) - set(stored))
    assert not missing, f"{len(missing)} of {len(accepted)} acknowledged signals were lost"
    assert stored == owner


def _remaining(field: str) -> int:
    """`r` of a RateLimit field for the publish policy (PROTOCOL.md section 9)."""
    match = re.fullmatch(r'"publish";r=(\d+);t=\d+', field)
    assert match, field
    return int(match[1])


async def _limits_seen(node: Node, base: str) -> int:
    reply = await node.request(base, "GET", "/v1/nodes/self")
    assert reply.status == 200, reply.body
    return int(reply.body["limits"]["publish_per_minute"])


async def test_publish_rate_limit_is_shared_by_two_hub_processes(
    hub_process_factory: HubFactory, admin: Admin
) -> None:
    hub_a = hub_process_factory()
    hub_b = hub_process_factory()
    node = await admin.enroll_node(hub_a.base_url)
    patched = await admin.call(
        hub_a.base_url,
        "PATCH",
        f"/v1/admin/tenants/{node.tenant_id}",
        {"limits": {"publish_per_minute": 20}},
    )
    assert patched.status == 200, patched.body

    # Both replicas must see the new limit (within 5 s) before the count starts.
    deadline = time.monotonic() + LIMITS_PROPAGATION + 1.0
    for base in (hub_a.base_url, hub_b.base_url):
        while (seen := await _limits_seen(node, base)) != 20:
            assert time.monotonic() < deadline, f"{base} still applies {seen}/min"
            await asyncio.sleep(0.1)

    answers = []
    for i in range(30):
        base = (hub_a, hub_b)[i % 2].base_url
        ids, body = _publish_body(node, 1)
        reply = await node.request(base, "POST", "/v1/signals", body)
        answers.append((ids[0], reply))

    statuses = [reply.status for _, reply in answers]
    assert statuses == [202] * 20 + [429] * 10, statuses
    for sent_id, reply in answers[:20]:
        assert reply.body["results"] == [
            {
                "id": sent_id,
                "status": "accepted",
                "candidate_id": reply.body["results"][0]["candidate_id"],
                "candidate_state": "pending",
            }
        ]
        assert reply.headers["RateLimit-Policy"] == '"publish";q=20;w=60'
    remaining = [_remaining(reply.headers["RateLimit"]) for _, reply in answers[:20]]
    assert remaining == list(range(19, -1, -1)), remaining
    for _, reply in answers[20:]:
        assert reply.code == "rate_limited", reply.body
        assert reply.headers["Content-Type"].startswith("application/problem+json")
        assert 1 <= int(reply.headers["Retry-After"]) <= 60
        assert reply.headers["RateLimit-Policy"] == '"publish";q=20;w=60'
        assert re.fullmatch(r'"publish";r=0;t=\d+', reply.headers["RateLimit"])
