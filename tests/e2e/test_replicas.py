"""Two hub processes on one database and one Redis behave as one hub (PROTOCOL.md 2, 4)."""

from __future__ import annotations

import asyncio
import time

from .conftest import HubFactory
from .remote import Admin

# PROTOCOL.md section 4: a revoke reaches every replica within 5 s.
REVOKE_PROPAGATION_SECONDS = 5.0
POLL_INTERVAL = 0.05


async def test_replay_on_another_replica_is_refused(
    hub_process_factory: HubFactory, admin: Admin
) -> None:
    hub_a = hub_process_factory()
    hub_b = hub_process_factory()
    node = await admin.enroll_node(hub_a.base_url)

    signed = node.sign("GET", "/v1/nodes/self")
    first = await node.send(hub_a.base_url, signed)
    assert first.status == 200, first.body
    assert first.body["node_id"] == node.node_id

    # Byte for byte the same request, same nonce, to the other replica.
    replay = await node.send(hub_b.base_url, signed)
    assert replay.status == 401, replay.body
    assert replay.code == "replayed_request"
    assert replay.headers["Content-Type"].startswith("application/problem+json")

    # The replica itself accepts the node's fresh requests: only the nonce was refused.
    fresh = await node.request(hub_b.base_url, "GET", "/v1/nodes/self")
    assert fresh.status == 200, fresh.body


async def test_signed_post_replay_on_another_replica_is_refused(
    hub_process_factory: HubFactory, admin: Admin
) -> None:
    """The nonce of a request with a body is spent across replicas too (key rotation)."""
    hub_a = hub_process_factory()
    hub_b = hub_process_factory()
    node = await admin.enroll_node(hub_a.base_url)
    # A rotation with a malformed body: the signature verifies and spends the nonce
    # before the body is looked at (PROTOCOL.md section 2), then the body is refused.
    signed = node.sign("POST", "/v1/nodes/self/keys", {"public_key": "AAAA", "proof": "AAAA"})
    first = await node.send(hub_a.base_url, signed)
    assert first.status == 422, first.body
    replay = await node.send(hub_b.base_url, signed)
    assert replay.status == 401, replay.body
    assert replay.code == "replayed_request"


async def test_revoke_reaches_the_other_replica_within_5_s(
    hub_process_factory: HubFactory, admin: Admin
) -> None:
    hub_a = hub_process_factory()
    hub_b = hub_process_factory()
    node = await admin.enroll_node(hub_a.base_url)

    # Hub B has seen the node, so its identity cache holds the unrevoked node.
    before = await node.request(hub_b.base_url, "GET", "/v1/nodes/self")
    assert before.status == 200, before.body

    started = time.monotonic()
    revoked = await admin.call(
        hub_a.base_url, "POST", f"/v1/admin/nodes/{node.node_id}/revoke", {"reason": "e2e"}
    )
    assert revoked.status == 200, revoked.body

    # The replica that revoked refuses at once.
    on_a = await node.request(hub_a.base_url, "GET", "/v1/nodes/self")
    assert (on_a.status, on_a.code) == (403, "node_revoked"), on_a.body

    # The other replica must follow within 5 s of the revoke: poll it with fresh
    # signed requests until it refuses, or the deadline passes.
    deadline = started + REVOKE_PROPAGATION_SECONDS
    answers: list[tuple[int, str | None]] = []
    while True:
        reply = await node.request(hub_b.base_url, "GET", "/v1/nodes/self")
        answers.append((reply.status, reply.code))
        if reply.status != 200 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_INTERVAL)
    elapsed = time.monotonic() - started
    assert answers[-1] == (403, "node_revoked"), answers[-5:]
    assert elapsed <= REVOKE_PROPAGATION_SECONDS, f"refused only after {elapsed:.2f} s"
    # Before it refused, the replica only ever answered 200 (no other failure on the way).
    assert all(a == (200, None) for a in answers[:-1]), answers
