"""RFC 9162 Merkle trees for the transparency log (PROTOCOL.md section 15).

Pure: hashing, proof planning and assembly for a hub that stores only the
hashes of complete subtrees, proof verification, and :class:`CompactRange`
for a node that appends every leaf it is served.

A node ``(level, index)`` is the root of the complete subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "Node",
    "consistency_plan",
    "consistency_proof",
    "frontier",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "new_nodes",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

Node = tuple[int, int]
Range = tuple[int, int]
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf): RFC 9162 section 2.1.1."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): RFC 9162 section 2.1.1."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): RFC 9162 section 2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) from the leaf hashes: RFC 9162 section 2.1.1."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(root(leaf_hashes[:k]), root(leaf_hashes[k:]))


def _subtrees(start: int, end: int) -> list[Node]:
    """The complete subtrees covering [start, end), left to right (a compact range)."""
    nodes: list[Node] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length()
        while start + (1 << level) > end:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def frontier(size: int) -> list[Node]:
    """The complete subtrees of the tree of `size` leaves, left to right: the
    compact range [0, size), whose fold is MTH (RFC 9162 section 2.1.1)."""
    return _subtrees(0, size)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its complete subtrees, right to left: RFC 9162 section 2.1.1
    splits at the largest power of two, which is the first subtree of the range."""
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def _path(m: int, start: int, end: int) -> list[Range]:
    """PATH(m, D[start:end]) as ranges, leaf to root: RFC 9162 section 2.1.3.1."""
    n = end - start
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, start, start + k), (start + k, end)]
    return [*_path(m - k, start + k, end), (start, start + k)]


def _subproof(m: int, start: int, end: int, whole: bool) -> list[Range]:
    """SUBPROOF(m, D[start:end], b) as ranges: RFC 9162 section 2.1.4.1."""
    n = end - start
    if m == n:
        return [] if whole else [(start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, start, start + k, whole), (start + k, end)]
    return [*_subproof(m - k, start + k, end, False), (start, start + k)]


def _inclusion_ranges(index: int, size: int) -> list[Range]:
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    return _path(index, 0, size)


def _consistency_ranges(first: int, second: int) -> list[Range]:
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    if first in (0, second):
        return []
    return _subproof(first, 0, second, True)


def _plan(ranges: Iterable[Range]) -> list[Node]:
    return [node for start, end in ranges for node in _subtrees(start, end)]


def _assemble(ranges: Iterable[Range], stored: Mapping[Node, bytes]) -> list[bytes]:
    return [_fold([stored[node] for node in _subtrees(start, end)]) for start, end in ranges]


def inclusion_plan(index: int, size: int) -> list[Node]:
    """The stored nodes an inclusion proof (RFC 9162 section 2.1.3.1) needs,
    O(log size) of them; the leaf's own hash is node (0, index)."""
    return _plan(_inclusion_ranges(index, size))


def inclusion_proof(index: int, size: int, stored: Mapping[Node, bytes]) -> list[bytes]:
    """The RFC 9162 section 2.1.3.1 inclusion proof from the stored nodes of
    :func:`inclusion_plan`."""
    return _assemble(_inclusion_ranges(index, size), stored)


def consistency_plan(first: int, second: int) -> list[Node]:
    """The stored nodes a consistency proof (RFC 9162 section 2.1.4.1) needs."""
    return _plan(_consistency_ranges(first, second))


def consistency_proof(first: int, second: int, stored: Mapping[Node, bytes]) -> list[bytes]:
    """The RFC 9162 section 2.1.4.1 consistency proof from the stored nodes of
    :func:`consistency_plan`."""
    return _assemble(_consistency_ranges(first, second), stored)


def new_nodes(
    size: int, frontier_hashes: Sequence[bytes], leaf_hashes: Iterable[bytes]
) -> dict[Node, bytes]:
    """Every complete subtree (leaves included) that appending `leaf_hashes` to
    the tree of `size` leaves completes, from that tree's :func:`frontier`
    hashes (RFC 9162 section 2.1.1 hashing)."""
    stack = list(zip(frontier(size), frontier_hashes, strict=True))
    made: dict[Node, bytes] = {}
    for h in leaf_hashes:
        node, value = (0, size), h
        made[node] = value
        while stack and stack[-1][0][0] == node[0]:
            (level, index), left = stack.pop()
            node, value = (level + 1, index >> 1), node_hash(left, value)
            made[node] = value
        stack.append((node, value))
        size += 1
    return made


class CompactRange:
    """The frontier of a tree a node keeps: append leaf hashes, get MTH
    (RFC 9162 section 2.1.1). Holds one hash per set bit of the size."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != len(frontier(size)):
            raise ValueError(f"a tree of size {size} has {len(frontier(size))} frontier hashes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash (RFC 9162 section 2.1.1)."""
        value, bit = leaf_hash, 0
        while self.size >> bit & 1:
            value = node_hash(self.hashes.pop(), value)
            bit += 1
        self.hashes.append(value)
        self.size += 1

    def root(self) -> bytes:
        """MTH of the tree so far (RFC 9162 section 2.1.1)."""
        return _fold(self.hashes)


def _verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 section 2.1.3.2: the root `proof` implies, or None."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof: RFC 9162 section 2.1.3.2."""
    return _verify_inclusion(index, size, leaf_hash, proof) == root


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """Check a consistency proof: RFC 9162 section 2.1.4.2 (equal sizes: an
    empty proof and equal roots; size1 0: an empty proof and the empty root)."""
    if not 0 <= size1 <= size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return not proof and root1 == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0
