"""The transparency log's endpoints (PROTOCOL.md 15 r2) against the real hub: the logs a
caller may see, checkpoints that Go's sumdb/note verifies, every proof checked by our
verifier and Go's sumdb/tlog, leaves that are the feed's events, frontiers, cosigning,
bad input of every kind, and a round that dies mid-append leaving the log as it was."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from honeymesh_client.protocol import merkle, note
from honeymesh_client.protocol.tlogleaf import leaf_bytes
from honeymesh_hub import state
from honeymesh_hub.services import sequencer
from honeymesh_hub.store import sequencer as sequencer_store
from tests.gotools import Run
from tests.support import Hub, Node, approve, sequenced, trusted

LOGS = "/v1/transparency/logs"


def _b(text: str) -> bytes:
    return base64.b64decode(text)


async def _reader(hub: Hub, tenant: str) -> dict[str, str]:
    reply = await hub.call("POST", f"/v1/admin/tenants/{tenant}/reader-keys", {"name": "log"})
    assert reply.status == 201, reply.body
    return {"X-Api-Key": reply.body["key"]}


async def _get(hub: Hub, path: str, headers: dict[str, str]) -> tuple[int, Any, str]:
    resp = await hub.client.get(path, headers=headers)
    text = await resp.text()
    body = json.loads(text) if "json" in resp.content_type else text
    return resp.status, resp.headers, body


@pytest.fixture
async def world(hub: Hub) -> dict[str, Any]:
    tenant = await hub.tenant()
    source = await trusted(hub, tenant)
    mesh = [await approve(source, f"198.51.100.{i}") for i in range(1, 6)]
    own = await approve(source, "198.51.100.77", share="tenant")
    allow = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "198.51.100.1", "reason": "x"})
    assert allow.status == 201
    await sequenced(hub)
    return {"tenant": tenant, "source": source, "mesh": mesh, "own": own}


async def _logs(hub: Hub, headers: dict[str, str]) -> dict[str, Any]:
    status, _, body = await _get(hub, LOGS, headers)
    assert status == 200, body
    return {entry["log"]: entry for entry in body["logs"]}


async def test_logs_checkpoints_leaves_and_proofs(
    hub: Hub, world: dict[str, Any], run: Run
) -> None:
    headers = await _reader(hub, world["tenant"])
    logs = await _logs(hub, headers)
    own_log = f"tenant:{world['tenant']}"
    assert set(logs) == {"mesh", own_log}
    # Five approvals and a retraction in mesh; one approval of the tenant's own.
    assert (logs["mesh"]["size"], logs[own_log]["size"]) == (6, 1)
    key = logs["mesh"]["verifier_key"]
    verifier = note.parse_verifier_key(key)
    for log, entry in logs.items():
        assert entry["origin"].endswith(f"/{log}") and entry["verifier_key"] == key
        status, resp_headers, text = await _get(hub, f"/v1/transparency/{log}/checkpoint", headers)
        assert status == 200 and resp_headers["Content-Type"] == "text/plain; charset=utf-8"
        opened = note.open_note(text, [verifier])
        cp = note.parse_checkpoint(opened.text)
        assert (cp.origin, cp.size) == (entry["origin"], entry["size"])

        # The leaves are the feed's events, and they make the signed root.
        status, _, body = await _get(
            hub, f"/v1/transparency/{log}/leaves?start=0&end={cp.size}", headers
        )
        assert status == 200
        leaves = [_b(x) for x in body["leaves"]]
        events = [json.loads(leaf) for leaf in leaves]
        assert all(
            leaf_bytes(e, e["event"]) == leaf for e, leaf in zip(events, leaves, strict=True)
        )
        hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
        assert merkle.root(hashes) == cp.root

        go: dict[str, Any] = {"verifier_key": key, "note": text, "inclusion": [], "consistency": []}
        for index in range(cp.size):
            status, _, proof = await _get(
                hub, f"/v1/transparency/{log}/proof/inclusion?index={index}&size={cp.size}", headers
            )
            assert status == 200 and _b(proof["leaf_hash"]) == hashes[index]
            path = [_b(h) for h in proof["hashes"]]
            assert merkle.verify_inclusion(index, cp.size, hashes[index], path, cp.root)
            go["inclusion"].append(
                {
                    "index": index,
                    "size": cp.size,
                    "leaf": body["leaves"][index],
                    "hashes": proof["hashes"],
                }
            )
        for first in range(1, cp.size + 1):
            status, _, proof = await _get(
                hub, f"/v1/transparency/{log}/proof/consistency?from={first}&to={cp.size}", headers
            )
            assert status == 200
            old = merkle.root(hashes[:first])
            assert merkle.verify_consistency(
                first, cp.size, [_b(h) for h in proof["hashes"]], old, cp.root
            )
            go["consistency"].append(
                {
                    "from": first,
                    "to": cp.size,
                    "root_from": base64.b64encode(old).decode(),
                    "root_to": base64.b64encode(cp.root).decode(),
                    "hashes": proof["hashes"],
                }
            )
        for size in range(cp.size + 1):
            status, _, front = await _get(
                hub, f"/v1/transparency/{log}/frontier?size={size}", headers
            )
            assert status == 200 and front["size"] == size
            tree = merkle.CompactRange(size, [_b(h) for h in front["hashes"]])
            assert tree.root() == merkle.root(hashes[:size])
        verdict = run(go)
        assert verdict.returncode == 0, verdict.stderr
        assert json.loads(verdict.stdout)["size"] == cp.size

    status, _, body = await _get(hub, "/v1/transparency/mesh/leaves?start=0&end=6", headers)
    kinds = [json.loads(_b(x))["event"] for x in body["leaves"]]
    assert kinds == ["added"] * 5 + ["removed"]


async def test_a_node_sees_the_same_logs_and_a_foreign_log_is_404(
    hub: Hub, world: dict[str, Any]
) -> None:
    node = await hub.enroll(world["tenant"])
    reply = await node.request("GET", LOGS)
    assert reply.status == 200
    assert {e["log"] for e in reply.body["logs"]} == {"mesh", f"tenant:{world['tenant']}"}
    other = await hub.tenant()
    stranger = await _reader(hub, other)
    for path in (
        f"/v1/transparency/tenant:{world['tenant']}/checkpoint",
        f"/v1/transparency/tenant:{world['tenant']}/leaves?start=0&end=1",
        f"/v1/transparency/tenant:{world['tenant']}/proof/inclusion?index=0&size=1",
        "/v1/transparency/nope/checkpoint",
        "/v1/transparency/tenant:/checkpoint",
    ):
        status, _, body = await _get(hub, path, stranger)
        assert status == 404, (path, body)
        assert body["code"] == "not_found"
    for headers in ({}, {"X-Api-Key": "hmk_" + "A" * 43}):
        status, _, _ = await _get(hub, LOGS, headers)
        assert status == 401


@pytest.mark.parametrize(
    "query",
    [
        "proof/inclusion?index=0&size=7",  # past the latest checkpoint
        "proof/inclusion?index=6&size=6",  # index not below size
        "proof/inclusion?index=-1&size=3",
        "proof/inclusion?size=3",
        "proof/inclusion?index=0&size=x",
        "proof/consistency?from=4&to=3",
        "proof/consistency?from=1&to=99",
        "proof/consistency?to=3",
        "leaves?start=0&end=7",
        "leaves?start=3&end=2",
        "leaves?start=0",
        "frontier?size=7",
        "frontier?size=1e3",
        "frontier",
        "checkpoint?cosigned=yes",
    ],
)
async def test_bad_queries_are_422(hub: Hub, world: dict[str, Any], query: str) -> None:
    headers = await _reader(hub, world["tenant"])
    status, _, body = await _get(hub, f"/v1/transparency/mesh/{query}", headers)
    assert status == 422, body
    assert body["code"] == "validation_failed"


async def test_more_than_1000_leaves_is_422(hub: Hub, world: dict[str, Any]) -> None:
    headers = await _reader(hub, world["tenant"])
    status, _, body = await _get(hub, "/v1/transparency/mesh/leaves?start=0&end=1001", headers)
    assert status == 422 and "1000" in body["detail"]


async def _cosign(node: Node, log: str, body: Any) -> Any:
    return await node.request("POST", f"/v1/transparency/{log}/cosignatures", body)


def _line(node: Node, text: str) -> str:
    name = f"node-{node.node_id}"
    return note.signature_line(name, node.key.public_raw, node.key.sign(text.encode()))


async def test_cosignatures(hub: Hub, world: dict[str, Any]) -> None:
    node = await hub.enroll(world["tenant"])
    checkpoint = (await node.request("GET", "/v1/transparency/mesh/checkpoint")).raw.decode()
    text = checkpoint.partition("\n\n")[0] + "\n"
    assert (
        await node.request("GET", "/v1/transparency/mesh/checkpoint?cosigned=true")
    ).status == 404

    # Refused, and nothing stored: a line by another key, one over other text, a
    # checkpoint the hub never signed, malformed bodies.
    other = await hub.enroll(world["tenant"])
    forged = note.parse_checkpoint(text)
    unsigned = note.checkpoint_text(note.Checkpoint(forged.origin, forged.size, b"\x07" * 32))
    for body in (
        {
            "checkpoint": checkpoint,
            "signature": _line(other, text).replace(
                f"node-{other.node_id}", f"node-{node.node_id}"
            ),
        },
        {"checkpoint": checkpoint, "signature": _line(node, text + "x")},
        {"checkpoint": unsigned, "signature": _line(node, unsigned)},
        {"checkpoint": text, "signature": "— nobody AAAA\n"},
        {"checkpoint": "not a checkpoint\n", "signature": _line(node, "not a checkpoint\n")},
    ):
        reply = await _cosign(node, "mesh", body)
        assert reply.status == 422, reply.body
    for raw in (b"{", b"[]", b'{"checkpoint": 1, "signature": "x"}', b'{"checkpoint": "x"}'):
        reply = await node.request("POST", "/v1/transparency/mesh/cosignatures", raw=raw)
        assert reply.status in (400, 422), reply.body
    assert (
        await node.request("GET", "/v1/transparency/mesh/checkpoint?cosigned=true")
    ).status == 404
    foreign = await hub.enroll(await hub.tenant())
    reply = await _cosign(
        foreign,
        f"tenant:{world['tenant']}",
        {"checkpoint": text, "signature": _line(foreign, text)},
    )
    assert reply.status == 404

    # Accepted: then the cosigned checkpoint carries the hub's line and the node's.
    for signer in (node, other):
        reply = await _cosign(
            signer, "mesh", {"checkpoint": checkpoint, "signature": _line(signer, text)}
        )
        assert reply.status == 201, reply.body
        assert reply.body == {"log": "mesh", "size": forged.size}
    cosigned = (
        await node.request("GET", "/v1/transparency/mesh/checkpoint?cosigned=true")
    ).raw.decode()
    logs = {e["log"]: e for e in (await node.request("GET", LOGS)).body["logs"]}
    verifiers = [note.parse_verifier_key(logs["mesh"]["verifier_key"])]
    for signer in (node, other):
        name = f"node-{signer.node_id}"
        verifiers.append(
            note.Verifier(name, note.key_hash(name, signer.key.public_raw), signer.key.public_raw)
        )
    opened = note.open_note(cosigned, verifiers)
    assert opened.text == text and len(opened.verified) == 3


async def test_a_round_that_dies_mid_append_leaves_the_log_as_it_was(
    hub: Hub, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await _reader(hub, world["tenant"])
    before = (await _get(hub, "/v1/transparency/mesh/checkpoint", headers))[2]
    pool, key = hub.client.app[state.POOL], hub.client.app[state.LOG_KEY]
    original = sequencer_store.append

    async def dies(*args: Any, **kwargs: Any) -> None:
        await original(*args, **kwargs)
        raise ConnectionResetError("the replica died before its commit")

    # Every round dies after its appends, the app's own loop's as well as this one's.
    monkeypatch.setattr(sequencer_store, "append", dies)
    for i in range(3):
        await approve(world["source"], f"203.0.113.{i + 1}")
    with pytest.raises(ConnectionResetError):
        for _ in range(50):
            await sequencer.run_round(pool, key)
    assert (await _get(hub, "/v1/transparency/mesh/checkpoint", headers))[2] == before
    monkeypatch.setattr(sequencer_store, "append", original)
    await sequenced(hub)
    after = (await _get(hub, "/v1/transparency/mesh/checkpoint", headers))[2]
    verifier = note.parse_verifier_key((await _logs(hub, headers))["mesh"]["verifier_key"])
    old = note.parse_checkpoint(note.open_note(before, [verifier]).text)
    new = note.parse_checkpoint(note.open_note(after, [verifier]).text)
    assert new.size == old.size + 3
    status, _, proof = await _get(
        hub, f"/v1/transparency/mesh/proof/consistency?from={old.size}&to={new.size}", headers
    )
    assert status == 200
    assert merkle.verify_consistency(
        old.size, new.size, [_b(h) for h in proof["hashes"]], old.root, new.root
    )
