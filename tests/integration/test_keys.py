"""Key rotation and key lookup (PROTOCOL.md section 5), with the hub's clock moved by hand."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest

from honeymesh_client.protocol.keys import NodeKey
from tests.conftest import Services
from tests.integration.foundation import (
    assert_problem,
    audit_end,
    audit_since,
    rotation_body,
    shared_database,
    snapshot,
)
from tests.support import Hub, Node


@pytest.fixture(scope="module")
def database_url(services: Services, template_db: str) -> Iterator[str]:
    yield from shared_database(services, template_db)


GRACE = 300


async def _rotate(node: Node, new: NodeKey, *, signing: NodeKey | None = None) -> tuple[int, dict]:
    reply = await node.request(
        "POST", "/v1/nodes/self/keys", rotation_body(node, new, signing), key=signing
    )
    return reply.status, reply.body


async def test_rotation_grace_and_lookup(hub: Hub) -> None:
    node = await hub.enroll()
    watcher = await hub.enroll()  # another tenant's node reads the keys
    old, new = node.key, NodeKey.generate()
    rotated_at = hub.now()
    start = await audit_end(hub)

    status, body = await _rotate(node, new)
    assert (status, body) == (200, {"keyid": new.keyid})

    # The new key works at once; the old one keeps working through the grace period.
    me = await node.request("GET", "/v1/nodes/self", key=new)
    assert me.status == 200 and me.body["keyid"] == new.keyid
    hub.clock.advance(GRACE - 2)
    assert (await node.request("GET", "/v1/nodes/self", key=old)).status == 200

    looked = await watcher.request("GET", f"/v1/keys/{old.keyid}")
    assert looked.status == 200
    assert looked.body["status"] == "rotated"
    assert looked.body["node_id"] == node.node_id
    assert looked.body["tenant_id"] == node.tenant_id
    assert base64.b64decode(looked.body["public_key"]) == old.public_raw
    assert looked.body["rotated_at"] is not None
    assert looked.body["revoked_at"] is None
    current = await watcher.request("GET", f"/v1/keys/{new.keyid}")
    assert current.body["status"] == "current" and current.body["rotated_at"] is None
    assert current.body["created_at"] == looked.body["rotated_at"]

    # Past 300 s the old key is unknown; it stays readable.
    hub.clock.advance(3)
    assert hub.now() >= rotated_at + GRACE
    assert_problem(await node.request("GET", "/v1/nodes/self", key=old), 401, "unknown_key")
    assert (await node.request("GET", "/v1/nodes/self", key=new)).status == 200
    assert (await watcher.request("GET", f"/v1/keys/{old.keyid}")).body["status"] == "rotated"

    # Audited, without secrets.
    entries = await audit_since(hub, start)
    (rotation,) = [e for e in entries if e["action"] == "key.rotate"]
    assert rotation["target"] == f"node:{node.node_id}"
    assert rotation["details"] == {"old_keyid": old.keyid, "new_keyid": new.keyid}


async def test_repeating_the_rotation_within_grace_changes_nothing(hub: Hub) -> None:
    node = await hub.enroll()
    old, new = node.key, NodeKey.generate()
    assert (await _rotate(node, new))[0] == 200
    before = await snapshot(hub.database_url)
    hub.clock.advance(100)
    # The same request again, signed by the key it replaced (a lost answer, retried).
    assert await _rotate(node, new, signing=old) == (200, {"keyid": new.keyid})
    assert await snapshot(hub.database_url) == before
    # Past the grace period, the old key cannot even sign the repeat.
    hub.clock.advance(GRACE)
    status, body = await _rotate(node, new, signing=old)
    assert status == 401 and body["code"] == "unknown_key"


async def test_other_rotations_during_grace_conflict(hub: Hub) -> None:
    node = await hub.enroll()
    old, new = node.key, NodeKey.generate()
    assert (await _rotate(node, new))[0] == 200
    before = await snapshot(hub.database_url)
    for signing in (new, old):
        status, body = await _rotate(node, NodeKey.generate(), signing=signing)
        assert (status, body["code"]) == (409, "conflict")
    assert await snapshot(hub.database_url) == before

    # Once the grace period is over, the new key may rotate again.
    hub.clock.advance(GRACE)
    third = NodeKey.generate()
    assert await _rotate(node, third, signing=new) == (200, {"keyid": third.keyid})


async def test_rotating_to_a_known_key_conflicts(hub: Hub) -> None:
    node = await hub.enroll()
    other = await hub.enroll()
    before = await snapshot(hub.database_url)
    for target in (other.key, node.key):
        status, body = await _rotate(node, target)
        assert (status, body["code"]) == (409, "conflict")
    assert await snapshot(hub.database_url) == before
    assert (await node.request("GET", "/v1/nodes/self")).body["keyid"] == node.key.keyid


async def test_bad_proof_installs_nothing(hub: Hub) -> None:
    node = await hub.enroll()
    new = NodeKey.generate()
    wrong_statement = base64.b64encode(
        new.sign(f"honeymesh-key-rotation:v1:{node.node_id}:{new.keyid}".encode())
    ).decode()
    before = await snapshot(hub.database_url)
    for proof in (
        wrong_statement,  # names the new key instead of the one signing the request
        rotation_body(node, NodeKey.generate())["proof"],  # another key's signature
        base64.b64encode(b"\0" * 64).decode(),
        "%%%",
    ):
        reply = await node.request(
            "POST", "/v1/nodes/self/keys", {"public_key": new.public_b64, "proof": proof}
        )
        problem = assert_problem(reply, 422, "validation_failed")
        assert problem["errors"][0]["pointer"] == "/proof"
    assert await snapshot(hub.database_url) == before
    assert_problem(await node.request("GET", "/v1/nodes/self", key=new), 401, "unknown_key")


async def test_revoked_nodes_keys_read_as_revoked(hub: Hub) -> None:
    node = await hub.enroll()
    watcher = await hub.enroll()
    await hub.call("POST", f"/v1/admin/nodes/{node.node_id}/revoke")
    looked = await watcher.request("GET", f"/v1/keys/{node.key.keyid}")
    assert looked.status == 200
    assert looked.body["status"] == "revoked"
    assert looked.body["revoked_at"] is not None
    assert_problem(await watcher.request("GET", f"/v1/keys/{'f' * 64}"), 404, "not_found")


async def test_racing_rotations_install_one_key(hub: Hub) -> None:
    node = await hub.enroll()
    candidates = [NodeKey.generate() for _ in range(6)]
    results = await asyncio.gather(*(_rotate(node, key) for key in candidates))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [409] * 5
    winner = next(body["keyid"] for status, body in results if status == 200)
    me = await node.request(
        "GET", "/v1/nodes/self", key=next(k for k in candidates if k.keyid == winner)
    )
    assert me.body["keyid"] == winner
