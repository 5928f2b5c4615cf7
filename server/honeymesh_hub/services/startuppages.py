"""CrowdSec startup pages rendered once per process and shared by every bouncer.

A hundred bouncers restarting after an outage all ask for the same startup answer
(CrowdSec's own LAPI needed 44 GB for 300k decisions and 100 bouncers before it
streamed). A page of it depends only on the key's scopes, the filters, the crowdsec id
it follows and the second it is rendered for (each decision's `duration` counts from
that second, so it is at most one second long; `until` is exact): never on the key.
So each page is read and encoded once, kept with the xmin its read began at, and any
stream whose boundary is at most that xmin may serve it (its read holds every change
of a transaction older than the stream's boundary; later ones come again as deltas
from the boundary, services/crowdsec.py).

gzip is shared too, as the snapshot pages do it (services/snapshots.py): each page is
deflated once with a sync flush; a stream writes one gzip member of a fixed header,
those blocks and its own small ones (brackets, separators, its deletions), a final
empty block, and the CRC-32 and length it computed over what it wrote.

Pages are kept in the shared bounded LRU (services/renderings.py).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .renderings import Renderings

DEFAULT_MAX_BYTES = 48 * 1024 * 1024
GZIP_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_LEVEL = 1

PageKey = tuple[Any, ...]


def deflate(data: bytes) -> bytes:
    """Raw deflate of `data`, sync-flushed (byte-aligned, not final)."""
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH)


FINAL_BLOCK = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)


@dataclass(slots=True, eq=False)
class Page:
    """One startup page: its decisions' JSON joined by ", " (no brackets)."""

    body: bytes
    count: int
    last_id: int | None  # the last crowdsec id read (filtered or not); None: no rows
    full: bool  # a whole page was read: more may follow
    xmin: int
    deflated: bytes | None = None
    kept: bool = False
    _deflating: asyncio.Task[bytes] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.body) + (len(self.deflated) if self.deflated else 0)


class StartupPages(Renderings[PageKey, Page]):
    """Startup pages by key (services/renderings.py), usable by a stream whose
    boundary is at most the xmin their read began at."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(max_bytes)

    async def get_after(
        self, key: PageKey, boundary: int, make: Callable[[], Awaitable[Page]]
    ) -> Page:
        """A page of `key` read once every transaction below `boundary` had ended."""
        return await self.get(key, make, lambda page: page.xmin >= boundary)

    def _made(self, key: PageKey, page: Page) -> None:
        old = self.peek(key)
        if old is None or old.xmin <= page.xmin:  # a newer read stays kept
            self._put(key, page)

    async def deflated(self, page: Page) -> bytes:
        """The page's deflate blocks, made once (in a thread) whoever asks meanwhile."""
        if page.deflated is not None:
            return page.deflated
        if page._deflating is None:
            page._deflating = asyncio.ensure_future(asyncio.to_thread(deflate, page.body))
        done = await asyncio.shield(page._deflating)
        if page.deflated is None:
            page.deflated = done
            page._deflating = None
            self.grew(page, len(done))
        return done


class GzipWriter:
    """One gzip member written as it goes: shared deflate blocks or fresh bytes."""

    def __init__(self) -> None:
        self._crc = 0
        self._size = 0

    def head(self) -> bytes:
        return GZIP_HEAD

    def fresh(self, data: bytes) -> bytes:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        return deflate(data)

    def shared(self, data: bytes, blocks: bytes) -> bytes:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        return blocks

    def end(self) -> bytes:
        return (
            FINAL_BLOCK
            + self._crc.to_bytes(4, "little")
            + (self._size & 0xFFFFFFFF).to_bytes(4, "little")
        )
