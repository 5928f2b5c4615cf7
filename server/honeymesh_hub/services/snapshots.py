"""Snapshot pages rendered once per process and shared by every node that pulls them.

A snapshot is the active set as of a sequenced position P (store/feed.py), so a page
depends only on (the caller's scopes, P, the id it follows, the limit, and whether it
is the first page), never on the node: only the cursor differs, and a page as of P
never changes. So the body is cut in two. The shared part is everything but the
cursor,

    {"more": true, "reset": false, "added": [...], "removed": [], "checkpoints": {...}, "cursor":

made once and kept in a per-process LRU bounded by bytes; each answer appends its own
node's cursor and `}`. The cache is keyed by the scopes, so a node is only ever served
a page built for exactly the visibility it has when it asks. A first page takes the
newest first page's P when no event the caller may see was sequenced after it (a read
as of now would be the same page), so nodes that start together share every page.

gzip: the shared part is deflated once with a sync flush (byte-aligned, not final);
each answer is one gzip member: a fixed header, that cached deflate data, the cursor
tail deflated by a fresh compressor (whose last block is final), then the CRC-32 and
length of the whole. Concatenated deflate blocks are one valid stream (RFC 1951 3.2.3),
so any gzip decoder reads it, no multi-member support needed.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from .renderings import Renderings

# Deflate level for the shared part, made once per page and process: on these pages
# level 1 takes half the time of 6 for 10 % more bytes.
_LEVEL = 1
# The gzip header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
_GZIP_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Distinct (scopes, limit) whose newest first page is remembered.
_MAX_FIRSTS = 10_000

# (scopes, the sequenced position P, the id the page follows, limit, first page)
SnapshotKey = tuple[tuple[str, ...], tuple[int, int], UUID | None, int, bool]


@dataclass(slots=True, eq=False)
class Deflated:
    data: bytes  # raw deflate of the shared part, sync-flushed (not final)
    crc: int  # CRC-32 of the shared part


@dataclass(slots=True, eq=False)
class Rendering:
    """One snapshot page as every node gets it, but for the cursor. Immutable once
    made, apart from its deflated form, made the first time a client admits gzip."""

    count: int
    last_id: UUID | None
    more: bool
    reset: bool
    shared: bytes  # the body up to the cursor's value
    position: tuple[int, int]  # the sequenced position the page is as of
    deflated: Deflated | None = None
    kept: bool = False  # in a cache's entries, its bytes counted
    _deflating: asyncio.Task[Deflated] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.shared) + (len(self.deflated.data) if self.deflated else 0)

    def tail(self, cursor: str) -> bytes:
        return json.dumps(cursor).encode() + b"}"

    def body(self, cursor: str) -> bytes:
        return self.shared + self.tail(cursor)

    def gzip(self, cursor: str) -> bytes:
        """A gzip member of `body(cursor)`; needs `deflated` (see `SnapshotCache.deflate`)."""
        assert self.deflated is not None
        tail = self.tail(cursor)
        packer = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS, 1)
        end = packer.compress(tail) + packer.flush(zlib.Z_FINISH)
        total = len(self.shared) + len(tail)
        trailer = struct.pack("<II", zlib.crc32(tail, self.deflated.crc), total & 0xFFFFFFFF)
        return b"".join((_GZIP_HEAD, self.deflated.data, end, trailer))


def render(
    count: int,
    last_id: UUID | None,
    added_json: str,
    more: bool,
    reset: bool,
    position: tuple[int, int],
    checkpoints: dict[str, str],
    removed_json: str = "[]",
) -> Rendering:
    """A page but for its cursor. A delta page is cut the same way, to be shared by the
    waiters at one position (services/feed.py's SharedReads), and never cached."""
    head = json.dumps({"more": more, "reset": reset})[:-1]
    notes = json.dumps(checkpoints)
    shared = (
        f'{head}, "added": {added_json}, "removed": {removed_json}, "checkpoints": {notes},'
        ' "cursor": '
    ).encode()
    return Rendering(count, last_id, more, reset, shared, position)


def deflate(shared: bytes) -> Deflated:
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = packer.compress(shared) + packer.flush(zlib.Z_SYNC_FLUSH)
    return Deflated(data, zlib.crc32(shared))


class SnapshotCache(Renderings[SnapshotKey, Rendering]):
    """Snapshot pages by key (services/renderings.py), identity and deflated bytes
    counted together; and the newest first page's position per (scopes, limit)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(max_bytes)
        # (scopes, limit) -> the newest first page's position, insertion-ordered
        self._first: dict[tuple[tuple[str, ...], int], tuple[int, int]] = {}

    @staticmethod
    def key(
        scopes: Sequence[str],
        position: tuple[int, int],
        after: UUID | None,
        limit: int,
        reset: bool,
    ) -> SnapshotKey:
        return (tuple(sorted(scopes)), position, after, limit, reset)

    def newest_first(self, scopes: Sequence[str], limit: int) -> tuple[int, int] | None:
        """The position of the newest first page of these scopes and limit."""
        return self._first.get((tuple(sorted(scopes)), limit))

    def _made(self, key: SnapshotKey, rendering: Rendering) -> None:
        if key[4]:
            first = (key[0], key[3])
            if first not in self._first or self._first[first] < key[1]:
                self._first[first] = key[1]
                while len(self._first) > _MAX_FIRSTS:
                    del self._first[next(iter(self._first))]
        self._put(key, rendering)

    async def deflate(self, rendering: Rendering) -> Deflated:
        """The rendering's deflated shared part, made once (in a thread: zlib lets go
        of the GIL) whoever asks for it meanwhile, and then counted in the bound."""
        if rendering.deflated is not None:
            return rendering.deflated
        if rendering._deflating is None:
            rendering._deflating = asyncio.ensure_future(
                asyncio.to_thread(deflate, rendering.shared)
            )
        done = await asyncio.shield(rendering._deflating)
        if rendering.deflated is None:
            rendering.deflated = done
            rendering._deflating = None
            self.grew(rendering, len(done.data))
        return done
