"""The node's checks of feed pages against the transparency log (logcheck.py), pure:
a delta that continues the range and matches its checkpoint, and every way one does
not; snapshot pages inside their checkpoints; a frontier that makes the signed root
and extends what was held."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from honeymesh_client import logcheck
from honeymesh_client.logcheck import LogMismatch, LogRange, Snapshot
from honeymesh_client.protocol import merkle, note
from honeymesh_client.protocol.tlogleaf import leaf_bytes

NAME = "honeymesh.test"
KEY = Ed25519PrivateKey.generate()


def _verifier(key: Ed25519PrivateKey = KEY) -> note.Verifier:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return note.parse_verifier_key(note.verifier_key(NAME, raw))


def _event(i: int, kind: str = "added") -> dict[str, Any]:
    event: dict[str, Any] = {"id": f"id-{i}", "indicator": {"type": "ip", "value": f"192.0.2.{i}"}}
    event.update({"reason": "retracted"} if kind == "removed" else {"confidence": 90})
    event["time"] = f"2026-12-07T00:00:{i:02d}.000000Z"
    event["leaf"] = {"log": "mesh", "index": i}
    return event


def _tree(events: list[tuple[str, dict[str, Any]]]) -> merkle.CompactRange:
    tree = merkle.CompactRange()
    for kind, e in events:
        tree.append(merkle.leaf_hash(leaf_bytes(e, kind)))
    return tree


def _checkpoint(size: int, root: bytes, key: Ed25519PrivateKey = KEY, log: str = "mesh") -> str:
    return note.sign(note.checkpoint_text(note.Checkpoint(f"{NAME}/{log}", size, root)), NAME, key)


def _page(events: list[tuple[str, dict[str, Any]]], checkpoint: str | None) -> dict[str, Any]:
    return {
        "added": [e for k, e in events if k == "added"],
        "removed": [e for k, e in events if k == "removed"],
        "checkpoints": {"mesh": checkpoint} if checkpoint else {},
        "more": False,
        "reset": False,
    }


def test_a_delta_that_continues_the_range_and_matches_is_taken() -> None:
    events = [("added", _event(0)), ("added", _event(1)), ("removed", _event(2, "removed"))]
    tree = _tree(events)
    first = _tree(events[:1])
    held = {"mesh": LogRange(first.size, list(first.hashes))}
    got = logcheck.check_delta(held, _page(events[1:], _checkpoint(3, tree.root())), _verifier())
    assert got["mesh"].size == 3 and got["mesh"].tree().root() == tree.root()
    assert held["mesh"].size == 1  # the caller's ranges are not touched


@pytest.mark.parametrize(
    "lie",
    [
        "altered",
        "dropped",
        "repeated",
        "wrong key",
        "no checkpoint",
        "other log",
        "no leaf",
        "stale",
    ],
)
def test_every_lie_in_a_delta_is_a_mismatch(lie: str) -> None:
    events = [("added", _event(0)), ("added", _event(1)), ("added", _event(2))]
    tree = _tree(events)
    served = [("added", dict(e)) for _, e in events[1:]]
    cp: str | None = _checkpoint(3, tree.root())
    if lie == "altered":
        served[0][1]["confidence"] = 1
    elif lie == "dropped":
        served.pop(0)
    elif lie == "repeated":
        served.append(served[0])
    elif lie == "wrong key":
        cp = _checkpoint(3, tree.root(), Ed25519PrivateKey.generate())
    elif lie == "no checkpoint":
        cp = None
    elif lie == "other log":
        cp = _checkpoint(3, tree.root(), log="tenant:x")
    elif lie == "no leaf":
        del served[0][1]["leaf"]
    elif lie == "stale":
        cp = _checkpoint(2, _tree(events[:2]).root())
    first = _tree(events[:1])
    with pytest.raises(LogMismatch):
        logcheck.check_delta(
            {"mesh": LogRange(1, list(first.hashes))}, _page(served, cp), _verifier()
        )


def test_snapshot_pages_lie_inside_one_checkpoint_and_the_frontier_makes_its_root() -> None:
    events = [("added", _event(i)) for i in range(5)]
    tree = _tree(events)
    cp = _checkpoint(5, tree.root())
    snap = Snapshot()
    logcheck.check_snapshot_page(snap, _page(events[3:], cp), _verifier())
    with pytest.raises(LogMismatch, match="changed"):
        logcheck.check_snapshot_page(
            Snapshot(dict(snap.checkpoints)),
            _page(events[:1], _checkpoint(4, _tree(events[:4]).root())),
            _verifier(),
        )
    outside = [("added", _event(7))]
    with pytest.raises(LogMismatch, match="cover"):
        logcheck.check_snapshot_page(Snapshot(), _page(outside, cp), _verifier())
    opened = logcheck.opened(cp, "mesh", _verifier())
    frontier = list(tree.hashes)
    assert logcheck.range_of_frontier("mesh", opened, frontier, None, None).size == 5
    with pytest.raises(LogMismatch, match="frontier makes"):
        logcheck.range_of_frontier("mesh", opened, [b"\x00" * 32] * len(frontier), None, None)
    # Extending what was held: a consistency proof, or a mismatch.
    small = _tree(events[:3])
    held = LogRange(3, list(small.hashes))
    nodes = {}
    for level in range(4):
        for index in range(5 >> level):
            lo, hi = index << level, (index + 1) << level
            nodes[(level, index)] = merkle.root(
                [merkle.leaf_hash(leaf_bytes(e, k)) for k, e in events[lo:hi]]
            )
    proof = merkle.consistency_proof(3, 5, nodes)
    assert logcheck.range_of_frontier("mesh", opened, frontier, held, proof).size == 5
    with pytest.raises(LogMismatch, match="does not extend"):
        logcheck.range_of_frontier("mesh", opened, frontier, held, [b"\x01" * 32] * len(proof))
    with pytest.raises(LogMismatch, match="shrank"):
        logcheck.range_of_frontier(
            "mesh",
            opened,
            frontier,
            LogRange(8, list(_tree([("added", _event(i)) for i in range(8)]).hashes)),
            None,
        )
