"""Snapshot pages rendered once per process and shared by every node that pulls them.

A snapshot page's content (its `added` text, `more`, and where the next page starts)
depends only on (the caller's scopes, the boundary xid, the id it follows, the limit,
and whether it is the first page), never on the node: only the cursor differs. So the
body is cut in two. The shared part is everything but the cursor,

    {"more": true, "reset": false, "added": [...], "removed": [], "cursor":

made once and kept in a per-process LRU bounded by bytes; each answer appends its own
node's cursor and `}`. A cached page is a valid answer whenever it is served: it was
read after its boundary was taken, so it holds every change of a transaction older
than the boundary, and every later change comes again as a delta from the boundary.
The cache is keyed by the scopes, so a node is only ever served a page built for
exactly the visibility it has when it asks.

The key holds no boundary: a rendering records `xmin`, the oldest running transaction
when its read began (every transaction below it had ended), and serves any node whose
boundary is at most that: the page holds every change of a transaction older than the
node's boundary, and later ones come again as deltas from it. So nodes that started
a snapshot at slightly different moments (every request moves xmin: it spends a
nonce) share every page after their first. A first page takes the newest rendering's
xmin as its boundary when no event the caller may see is in the log from that xmin on
(a read now would be the same page), so nodes that start together share all pages.

gzip: the shared part is deflated once with a sync flush (byte-aligned, not final);
each answer is one gzip member: a fixed header, that cached deflate data, the cursor
tail deflated by a fresh compressor (whose last block is final), then the CRC-32 and
length of the whole. Concatenated deflate blocks are one valid stream (RFC 1951 3.2.3),
so any gzip decoder reads it, no multi-member support needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

# Deflate level for the shared part, made once per page and process: on these pages
# level 1 takes half the time of 6 for 10 % more bytes.
_LEVEL = 1
# The gzip header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
_GZIP_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

DEFAULT_MAX_BYTES = 64 * 1024 * 1024

SnapshotKey = tuple[tuple[str, ...], UUID | None, int, bool]


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
    xmin: int  # every transaction below it had ended when the read began
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
    count: int, last_id: UUID | None, added_json: str, more: bool, reset: bool, xmin: int
) -> Rendering:
    head = json.dumps({"more": more, "reset": reset})[:-1]
    shared = f'{head}, "added": {added_json}, "removed": [], "cursor": '.encode()
    return Rendering(count, last_id, more, reset, shared, xmin)


def deflate(shared: bytes) -> Deflated:
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = packer.compress(shared) + packer.flush(zlib.Z_SYNC_FLUSH)
    return Deflated(data, zlib.crc32(shared))


class SnapshotCache:
    """Renderings by key, least recently used first out, bounded by their bytes
    (identity and deflated together). Concurrent misses of one key share one read;
    a rendering larger than the whole bound is served but not kept."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[SnapshotKey, Rendering] = OrderedDict()
        self._inflight: dict[SnapshotKey, asyncio.Task[Rendering]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(scopes: Sequence[str], after: UUID | None, limit: int, reset: bool) -> SnapshotKey:
        return (tuple(sorted(scopes)), after, limit, reset)

    async def get(
        self, key: SnapshotKey, boundary: int, make: Callable[[], Awaitable[Rendering]]
    ) -> Rendering:
        """A rendering of `key` whose read began once every transaction below
        `boundary` had ended (its xmin at least `boundary`); `make` reads one."""
        found = self._entries.get(key)
        if found is not None and found.xmin >= boundary:
            self._entries.move_to_end(key)
            self.hits += 1
            return found
        task = self._inflight.get(key)
        if task is not None:
            # Shielded: a requester that goes away does not cancel the others' read.
            shared = await asyncio.shield(task)
            if shared.xmin >= boundary:
                self.hits += 1
                return shared
        self.misses += 1
        task = asyncio.ensure_future(make())
        self._inflight[key] = task
        task.add_done_callback(lambda t: self._settle(key, t))
        return await asyncio.shield(task)

    async def current(self, key: SnapshotKey) -> Rendering | None:
        """The newest rendering of `key` kept or being read (awaited), if any."""
        task = self._inflight.get(key)
        if task is not None:
            with contextlib.suppress(Exception):
                return await asyncio.shield(task)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def _settle(self, key: SnapshotKey, task: asyncio.Task[Rendering]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:
            return
        self._put(key, task.result())

    def _put(self, key: SnapshotKey, rendering: Rendering) -> None:
        old = self._entries.get(key)
        if old is not None and old.xmin > rendering.xmin:
            return  # a newer read is kept already
        old = self._entries.pop(key, None)
        if old is not None:
            old.kept = False
            self.bytes -= old.size
        if rendering.size > self.max_bytes:
            return
        self._entries[key] = rendering
        rendering.kept = True
        self.bytes += rendering.size
        self._trim()

    def _trim(self) -> None:
        while self.bytes > self.max_bytes and self._entries:
            _, gone = self._entries.popitem(last=False)
            gone.kept = False
            self.bytes -= gone.size

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
            if rendering.kept:
                self.bytes += len(done.data)
                self._trim()
        return done
