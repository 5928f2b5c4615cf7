"""The transparency log (PROTOCOL.md 15 r2): one append-only RFC 9162 Merkle log per
scope of every feed event, and the hub's signed checkpoints of it.

Why it is append-only, in the order the feed serves events, across replicas: leaves
are appended only by the sequencer (services/sequencer.py), inside the transaction
that gives events their `ord`, while it holds the sequencer's lock. The log is then a
function of the sequenced rows: a log's leaf i is the i-th sequenced event of its
scope, nodes and head are written with them, and a replica that dies mid-append
rolls the whole round back, leaving the log as the last committed round left it.
The next claimer appends from that head. Nothing ever updates a node or a leaf.

Storage keeps every complete subtree's hash (`tlog_nodes`), so any proof, any root
and any frontier is O(log n) rows read by primary key, at any size; and a checkpoint
for any size up to the head can be signed again (Ed25519 signatures are
deterministic, so it is the same note every time).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from honeymesh_client.protocol import merkle
from honeymesh_client.protocol.tlogleaf import log_of_scope

from ..store import tlog as store
from ..store.tlog import add_cosignature, latest_cosigned, leaves, sizes
from ..tlog import LogKey, logged_event

# The log's reads and writes for the routes, which reach the database only here.
__all__ = [
    "add_cosignature",
    "append",
    "consistency",
    "frontier",
    "inclusion",
    "latest_cosigned",
    "leaves",
    "root_at",
    "sizes",
]

# (scope_key, kind, entry, reason, time) of an event to log.
Item = tuple[str, str, dict[str, Any], "str | None", datetime]


async def append(
    conn: Any, key: LogKey, items: Sequence[Item], now: datetime
) -> list[tuple[int, bytes, str]]:
    """Append `items`, in order, to their scopes' logs in this transaction: each one's
    (log index, leaf, the event as the feed serves it). The caller holds the
    sequencer's lock."""
    if not items:
        return []
    logs = {log_of_scope(item[0]) for item in items}
    size = await store.sizes(conn, logs)
    wanted = [(log, node) for log in logs for node in merkle.frontier(size.get(log, 0))]
    stored = await store.nodes(conn, wanted)
    hashes: dict[str, list[bytes]] = defaultdict(list)
    placed: list[tuple[int, bytes, str]] = []
    for scope_key, kind, entry, reason, time in items:
        log = log_of_scope(scope_key)
        index = size.get(log, 0) + len(hashes[log])
        leaf, served = logged_event(kind, entry, reason, time, log, index)
        placed.append((index, leaf, served))
        hashes[log].append(merkle.leaf_hash(leaf))
    made: list[tuple[str, int, int, bytes]] = []
    heads: list[tuple[str, int, bytes, str]] = []
    for log, leaf_hashes in hashes.items():
        before = size.get(log, 0)
        front = [stored[(log, node)] for node in merkle.frontier(before)]
        made.extend(
            (log, level, index, h)
            for (level, index), h in merkle.new_nodes(before, front, leaf_hashes).items()
        )
        tree = merkle.CompactRange(before, front)
        for h in leaf_hashes:
            tree.append(h)
        heads.append((log, tree.size, tree.root(), key.checkpoint(log, tree.size, tree.root())))
    await store.write(conn, made, heads, now)
    return placed


async def _stored(conn: Any, log: str, plan: Sequence[merkle.Node]) -> dict[merkle.Node, bytes]:
    got = await store.nodes(conn, [(log, node) for node in plan])
    return {node: h for (_, node), h in got.items()}


async def frontier(conn: Any, log: str, size: int) -> list[bytes]:
    """The roots of the complete subtrees of the tree of `size`, left to right."""
    plan = merkle.frontier(size)
    stored = await _stored(conn, log, plan)
    return [stored[node] for node in plan]


async def root_at(conn: Any, log: str, size: int) -> bytes:
    return merkle.CompactRange(size, await frontier(conn, log, size)).root()


async def inclusion(conn: Any, log: str, index: int, size: int) -> tuple[bytes, list[bytes]]:
    """The leaf hash at `index` and its inclusion proof in the tree of `size`."""
    plan = [(0, index), *merkle.inclusion_plan(index, size)]
    stored = await _stored(conn, log, plan)
    return stored[(0, index)], merkle.inclusion_proof(index, size, stored)


async def consistency(conn: Any, log: str, first: int, second: int) -> list[bytes]:
    plan = merkle.consistency_plan(first, second)
    return merkle.consistency_proof(first, second, await _stored(conn, log, plan))
