"""Checking feed pages against the hub's transparency log (PROTOCOL.md 12 r2, 15 r2).

Pure: the node keeps, per log, the compact range of every leaf it was served (a
few dozen hashes) and checks each page before it applies it.

- A delta page: every event's leaf is rebuilt from the event as served (RFC 8785, the
  hub's own function); per log the indices must continue the range without a gap, and
  the page's checkpoint for that log, signed by the pinned log key, must be of exactly
  the range's new size and root.
- A snapshot page: its events must lie inside its checkpoints, which must be signed by
  the pinned key and the same on every page of the snapshot; on the last page the
  node takes each log's frontier at that size from the hub and checks that it makes
  the signed root (and, where it held a range before, that the new tree extends it:
  a consistency proof). The frontier then is its range.

Any failure is a `LogMismatch`: one sentence naming the log, the size and both
roots where there are two; the caller applies nothing of the page.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ClientError
from .protocol import merkle, note
from .protocol.tlogleaf import leaf_bytes

__all__ = ["LogMismatch", "LogRange", "Snapshot", "check_delta", "check_snapshot_page", "opened"]


class LogMismatch(ClientError):
    """The hub's feed does not match its own signed log."""


@dataclass(slots=True)
class LogRange:
    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def tree(self) -> merkle.CompactRange:
        return merkle.CompactRange(self.size, self.hashes)

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "hashes": [_b64(h) for h in self.hashes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogRange:
        found = cls(int(data["size"]), [base64.b64decode(h, validate=True) for h in data["hashes"]])
        found.tree()  # the right number of hashes for its size, or ValueError
        return found


@dataclass(slots=True)
class Snapshot:
    """The checkpoints a snapshot in progress was served, by log: the same on every
    page; checked against frontiers on its last page."""

    checkpoints: dict[str, str] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def opened(checkpoint: Any, log: str, verifier: note.Verifier) -> note.Checkpoint:
    """A log's checkpoint, signed by the pinned key, of that log's origin."""
    if not isinstance(checkpoint, str):
        raise LogMismatch(f"the hub sent no checkpoint of the {log} log with its events.")
    try:
        cp = note.parse_checkpoint(note.open_note(checkpoint, [verifier]).text)
    except note.NoteError as exc:
        raise LogMismatch(
            f"the checkpoint of the {log} log is not signed by the pinned log key ({exc})."
        ) from None
    if cp.origin != f"{verifier.name}/{log}":
        raise LogMismatch(f"the checkpoint of the {log} log names another log, {cp.origin}.")
    return cp


def _events(page: Mapping[str, Any]) -> list[tuple[str, int, bytes]]:
    """(log, index, leaf hash) of every event of a page, from the event as served."""
    out: list[tuple[str, int, bytes]] = []
    for kind in ("added", "removed"):
        for event in page.get(kind) or []:
            leaf = event.get("leaf") if isinstance(event, dict) else None
            if (
                not isinstance(leaf, dict)
                or not isinstance(leaf.get("log"), str)
                or not isinstance(leaf.get("index"), int)
                or isinstance(leaf.get("index"), bool)
            ):
                raise LogMismatch("the hub sent an event without its place in the log.")
            try:
                data = leaf_bytes(event, kind)
            except (TypeError, ValueError) as exc:
                raise LogMismatch(f"the hub sent an event that is no log leaf ({exc}).") from None
            out.append((leaf["log"], leaf["index"], merkle.leaf_hash(data)))
    return out


def check_delta(
    ranges: Mapping[str, LogRange], page: Mapping[str, Any], verifier: note.Verifier
) -> dict[str, LogRange]:
    """The ranges once a delta page's leaves are appended, each log's checked against
    the page's checkpoint of it; raises LogMismatch."""
    by_log: dict[str, list[tuple[int, bytes]]] = {}
    for log, index, h in _events(page):
        by_log.setdefault(log, []).append((index, h))
    out = dict(ranges)
    checkpoints = page.get("checkpoints") or {}
    for log, items in sorted(by_log.items()):
        held = ranges.get(log)
        if held is None:
            raise LogMismatch(f"the hub sent events of the {log} log, which its snapshot had not.")
        tree = held.tree()
        for index, h in sorted(items):
            if index != tree.size:
                raise LogMismatch(
                    f"the {log} log goes from size {tree.size} to index {index}:"
                    " the hub left an event out or sent one twice."
                )
            tree.append(h)
        cp = opened(checkpoints.get(log), log, verifier)
        if (cp.size, cp.root) != (tree.size, tree.root()):
            raise LogMismatch(
                f"the {log} log does not match at size {tree.size}: the events served make"
                f" root {_b64(tree.root())}, the hub signed {_b64(cp.root)} at size {cp.size}."
            )
        out[log] = LogRange(tree.size, list(tree.hashes))
    return out


def check_snapshot_page(
    snapshot: Snapshot, page: Mapping[str, Any], verifier: note.Verifier
) -> dict[str, note.Checkpoint]:
    """Check a snapshot page's events lie inside its checkpoints, signed and the same
    as earlier pages'; record them in `snapshot`. Returns the page's checkpoints."""
    checkpoints = page.get("checkpoints") or {}
    if not isinstance(checkpoints, dict):
        raise LogMismatch("the hub sent checkpoints that are not a map of logs.")
    found = {log: opened(text, log, verifier) for log, text in sorted(checkpoints.items())}
    for log, text in checkpoints.items():
        earlier = snapshot.checkpoints.get(log)
        if earlier is not None and earlier != text:
            raise LogMismatch(f"the hub changed the {log} log's checkpoint within one snapshot.")
    for log, index, _ in _events(page):
        cp = found.get(log)
        if cp is None:
            raise LogMismatch(f"the hub sent events of the {log} log without its checkpoint.")
        if index >= cp.size:
            raise LogMismatch(
                f"the {log} log's checkpoint, of size {cp.size}, does not cover index {index}."
            )
    snapshot.checkpoints.update(checkpoints)
    return found


def range_of_frontier(
    log: str,
    cp: note.Checkpoint,
    frontier: list[bytes],
    before: LogRange | None,
    consistency: list[bytes] | None,
) -> LogRange:
    """A log's range from the hub's frontier at a snapshot's checkpoint, checked to make
    the signed root and, if the node held a range before, to extend it."""
    try:
        tree = merkle.CompactRange(cp.size, frontier)
    except ValueError:
        raise LogMismatch(
            f"the hub's frontier of the {log} log is not one of size {cp.size}."
        ) from None
    if tree.root() != cp.root:
        raise LogMismatch(
            f"the {log} log does not match at size {cp.size}: the hub's frontier makes root"
            f" {_b64(tree.root())}, the hub signed {_b64(cp.root)}."
        )
    if before is not None and before.size:
        if cp.size < before.size:
            raise LogMismatch(
                f"the {log} log shrank from size {before.size} to {cp.size}: history was rewritten."
            )
        old = before.tree().root()
        if consistency is None or not merkle.verify_consistency(
            before.size, cp.size, consistency, old, cp.root
        ):
            raise LogMismatch(
                f"the {log} log at size {cp.size} (root {_b64(cp.root)}) does not extend the one"
                f" this node verified at size {before.size} (root {_b64(old)})."
            )
    return LogRange(cp.size, list(frontier))
