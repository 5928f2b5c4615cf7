"""`honeymesh-node audit` (PROTOCOL.md 12 r2, 15 r2): the node's logs checked end to
end, then cosigned.

For each log the node follows, against the ranges its feed state holds (every leaf it
was served, verified page by page):

- the hub's latest checkpoint, signed by the pinned key, extends the node's own tree
  (a consistency proof from the node's size to the checkpoint's);
- the latest checkpoint other nodes cosigned, also signed by the hub, is consistent
  with the node's tree, whichever is larger: the hub shows this node the history it
  showed them;
- held decisions (up to `sample`, chosen at random) are in the log: an inclusion proof
  of each one's leaf, rebuilt from the decision as it is held, in the node's tree;
- then the node cosigns the checkpoint it verified: a signed-note line by
  `node-<node_id>` over the checkpoint's text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import HubError
from .feedstate import FeedState, pin_log_key
from .hub import HubClient
from .logcheck import LogMismatch, LogRange, opened
from .protocol import merkle, note
from .protocol.keys import NodeKey, b64encode
from .protocol.tlogleaf import leaf_bytes

__all__ = ["LogAudit", "audit", "cosign_line"]


@dataclass(slots=True)
class LogAudit:
    log: str
    size: int  # the node's tree
    latest: int  # the hub's latest checkpoint
    cosigned: int | None  # the latest cosigned checkpoint, if any
    cosigners: int
    included: int  # held decisions proven in the log
    cosigned_now: bool


def cosign_line(node_id: str, key: NodeKey, text: str) -> str:
    name = f"node-{node_id}"
    return note.signature_line(name, key.public_raw, key.sign(text.encode()))


async def _consistent(
    client: HubClient, log: str, small: int, small_root: bytes, big: int, big_root: bytes
) -> bool:
    proof = await client.log_consistency(log, small, big) if 0 < small < big else []
    return merkle.verify_consistency(small, big, proof, small_root, big_root)


async def _check_log(
    client: HubClient,
    state: FeedState,
    log: str,
    held: LogRange,
    verifier: note.Verifier,
    sample: int,
    rng: random.Random,
) -> tuple[LogAudit, str]:
    ours = held.tree().root()
    latest_note = await client.log_checkpoint(log)
    latest = opened(latest_note, log, verifier)
    if latest.size < held.size or not await _consistent(
        client, log, held.size, ours, latest.size, latest.root
    ):
        raise LogMismatch(
            f"the hub's latest {log} checkpoint (size {latest.size}) does not extend the tree"
            f" this node verified (size {held.size}, root {b64encode(ours)})."
        )
    cosigned_size: int | None = None
    cosigners = 0
    try:
        cosigned_note = await client.log_checkpoint(log, cosigned=True)
    except HubError as exc:
        if exc.status != 404:
            raise
    else:
        theirs = opened(cosigned_note, log, verifier)
        cosigned_size = theirs.size
        cosigners = len(note.split_note(cosigned_note)[1]) - 1
        small, big = sorted(((held.size, ours), (theirs.size, theirs.root)))
        if not await _consistent(client, log, small[0], small[1], big[0], big[1]):
            raise LogMismatch(
                f"the {log} checkpoint other nodes cosigned (size {theirs.size}) is not"
                f" consistent with the tree this node verified (size {held.size}): the hub"
                " shows them another history."
            )
    entries = [e for e in state.active.values() if (e.get("leaf") or {}).get("log") == log]
    included = 0
    for entry in rng.sample(entries, min(sample, len(entries))):
        index = entry["leaf"]["index"]
        leaf = merkle.leaf_hash(leaf_bytes(entry, "added"))
        if index >= held.size:
            raise LogMismatch(f"a held decision's leaf {index} is past the {log} log's size.")
        proof = await client.log_inclusion(log, index, held.size)
        if not merkle.verify_inclusion(index, held.size, leaf, proof, ours):
            raise LogMismatch(
                f"held decision {entry.get('id')} is not leaf {index} of the {log} log"
                f" of size {held.size}."
            )
        included += 1
    text = note.open_note(latest_note, [verifier]).text
    return LogAudit(log, held.size, latest.size, cosigned_size, cosigners, included, False), text


async def audit(
    client: HubClient,
    state: FeedState,
    node_id: str,
    key: NodeKey,
    *,
    sample: int = 64,
    cosign: bool = True,
    rng: random.Random | None = None,
) -> list[LogAudit]:
    """Audit every log the node follows; raises LogMismatch on the first failure."""
    verifier = await pin_log_key(client, state)
    if not state.ranges:
        raise LogMismatch("this node has verified no log yet; pull first.")
    done: list[LogAudit] = []
    for log, held in sorted(state.ranges.items()):
        result, text = await _check_log(
            client, state, log, held, verifier, sample, rng or random.Random()
        )
        if cosign:
            await client.cosign(log, text, cosign_line(node_id, key, text))
            result.cosigned_now = True
        done.append(result)
    return done
