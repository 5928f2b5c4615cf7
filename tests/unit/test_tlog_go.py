"""Interop: Go's golang.org/x/mod/sumdb/note and sumdb/tlog check our signed
checkpoints and RFC 9162 proofs (tests/interop/tlogverify, PROTOCOL.md section 15).

The Go program is built once per session, offline, in GOPATH mode against
Debian's golang-golang-x-mod-dev sources.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from honeymesh_client.protocol import merkle, note
from honeymesh_client.protocol.keys import b64encode
from tests.gotools import Run

ORIGIN = "hub.example/signals"
SIZE = 37


class Tree:
    """A log of random leaves with every complete subtree stored, as the hub keeps."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.leaves = [rng.randbytes(rng.randrange(0, 64)) for _ in range(size)]
        hashes = [merkle.leaf_hash(leaf) for leaf in self.leaves]
        self.stored = merkle.new_nodes(0, [], hashes)
        self.roots = [merkle.root(hashes[:n]) for n in range(size + 1)]

    def inclusion(self, index: int, size: int) -> dict[str, Any]:
        proof = merkle.inclusion_proof(index, size, self.stored)
        return {
            "index": index,
            "size": size,
            "leaf": b64encode(self.leaves[index]),
            "root": b64encode(self.roots[size]),
            "hashes": [b64encode(h) for h in proof],
        }

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        proof = merkle.consistency_proof(first, second, self.stored)
        return {
            "from": first,
            "to": second,
            "root_from": b64encode(self.roots[first]),
            "root_to": b64encode(self.roots[second]),
            "hashes": [b64encode(h) for h in proof],
        }


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.fixture
def tree() -> Tree:
    return Tree(SIZE, random.Random(9162))


@pytest.fixture
def hub_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def signed_checkpoint(tree: Tree, key: Ed25519PrivateKey, name: str = "hub.example") -> str:
    text = note.checkpoint_text(note.Checkpoint(ORIGIN, SIZE, tree.roots[SIZE]))
    return note.sign(text, name, key)


def test_go_verifies_checkpoint_and_proofs(
    run: Run, tree: Tree, hub_key: Ed25519PrivateKey
) -> None:
    inclusion = [tree.inclusion(i, SIZE) for i in (0, 1, 17, 31, 32, 36)]
    inclusion += [tree.inclusion(i, n) for i, n in ((0, 1), (4, 5), (7, 8), (12, 20))]
    del inclusion[0]["root"]  # the checkpoint's own root stands in
    consistency = [tree.consistency(m, SIZE) for m in (1, 2, 7, 8, 16, 32, 36, 37)]
    consistency += [tree.consistency(m, n) for m, n in ((3, 5), (8, 16), (13, 29))]
    request = {
        "verifier_key": note.verifier_key("hub.example", public_raw(hub_key)),
        "note": note.add_signature(
            signed_checkpoint(tree, hub_key), "node-3", Ed25519PrivateKey.generate()
        ),
        "inclusion": inclusion,
        "consistency": consistency,
    }
    result = run(request)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "ok": True,
        "origin": ORIGIN,
        "size": SIZE,
        "root": b64encode(tree.roots[SIZE]),
    }


def test_go_verifies_every_proof_of_a_small_tree(run: Run, hub_key: Ed25519PrivateKey) -> None:
    small = Tree(SIZE, random.Random(6962))
    request = {
        "verifier_key": note.verifier_key("hub.example", public_raw(hub_key)),
        "note": signed_checkpoint(small, hub_key),
        "inclusion": [small.inclusion(i, n) for n in range(1, 12) for i in range(n)],
        "consistency": [small.consistency(m, n) for n in range(1, 12) for m in range(1, n + 1)],
    }
    result = run(request)
    assert result.returncode == 0, result.stderr


def test_go_cosignature_by_node_key(run: Run, tree: Tree, hub_key: Ed25519PrivateKey) -> None:
    node_key = Ed25519PrivateKey.generate()
    cosigned = note.add_signature(signed_checkpoint(tree, hub_key), "node-42", node_key)
    request = {"verifier_key": note.verifier_key("node-42", public_raw(node_key)), "note": cosigned}
    result = run(request)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("wrong key", "no verifiable signatures"),
        ("tampered size", "invalid signature"),
        ("wrong checkpoint root", "inclusion 0"),
        ("wrong older root", "inclusion 1"),
        ("wrong proof", "consistency 0"),
        ("root_to not the checkpoint's", "not the checkpoint's"),
    ],
)
def test_go_rejects(
    run: Run, tree: Tree, hub_key: Ed25519PrivateKey, case: str, error: str
) -> None:
    signed = signed_checkpoint(tree, hub_key)
    request: dict[str, Any] = {
        "verifier_key": note.verifier_key("hub.example", public_raw(hub_key)),
        "note": signed,
        "inclusion": [tree.inclusion(5, SIZE)],
        "consistency": [tree.consistency(20, SIZE)],
    }
    if case == "wrong key":
        other = Ed25519PrivateKey.generate()
        request["verifier_key"] = note.verifier_key("hub.example", public_raw(other))
    elif case == "tampered size":
        request["note"] = signed.replace(f"\n{SIZE}\n", f"\n{SIZE + 1}\n")
    elif case == "wrong checkpoint root":
        text = note.checkpoint_text(note.Checkpoint(ORIGIN, SIZE, tree.roots[SIZE - 1]))
        request["note"] = note.sign(text, "hub.example", hub_key)
        del request["inclusion"][0]["root"]
        request["consistency"] = []
    elif case == "wrong older root":
        request["inclusion"].append(tree.inclusion(5, 30))
        request["inclusion"][1]["root"] = b64encode(tree.roots[29])
    elif case == "wrong proof":
        hashes = request["consistency"][0]["hashes"]
        hashes[1] = b64encode(bytes(32))
    else:
        request["consistency"][0]["root_to"] = b64encode(tree.roots[SIZE - 1])
    result = run(request)
    assert result.returncode == 1
    assert error in result.stderr, result.stderr
