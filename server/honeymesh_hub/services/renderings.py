"""Renderings kept per process and shared by every request that asks for the same one:
the feed's snapshot pages (services/snapshots.py) and the CrowdSec startup pages
(services/startuppages.py).

An LRU by key, bounded by the renderings' bytes; concurrent misses of one key share
one read; a rendering larger than the whole bound is served but not kept. A caller
may say which kept renderings are usable for it (a read recent enough), and a
rendering that grows later (its deflated form) is counted when it does.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar


class Kept(Protocol):
    kept: bool

    @property
    def size(self) -> int: ...


K = TypeVar("K", bound=Hashable)
R = TypeVar("R", bound=Kept)


def _always(_rendering: object) -> bool:
    return True


class Renderings(Generic[K, R]):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, R] = OrderedDict()
        self._inflight: dict[K, asyncio.Task[R]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> R | None:
        return self._entries.get(key)

    async def get(
        self,
        key: K,
        make: Callable[[], Awaitable[R]],
        usable: Callable[[R], bool] = _always,
    ) -> R:
        """The rendering of `key` that is `usable`; `make` reads one when none is kept
        or being read."""
        found = self._entries.get(key)
        if found is not None and usable(found):
            self._entries.move_to_end(key)
            self.hits += 1
            return found
        task = self._inflight.get(key)
        if task is not None:
            # Shielded: a requester that goes away does not cancel the others' read.
            shared = await asyncio.shield(task)
            if usable(shared):
                self.hits += 1
                return shared
        self.misses += 1
        task = asyncio.ensure_future(make())
        self._inflight[key] = task
        task.add_done_callback(lambda t: self._settle(key, t))
        return await asyncio.shield(task)

    def _settle(self, key: K, task: asyncio.Task[R]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:
            return
        self._made(key, task.result())

    def _made(self, key: K, rendering: R) -> None:
        """A read finished: keep it (a subclass may first look at it)."""
        self._put(key, rendering)

    def _put(self, key: K, rendering: R) -> None:
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

    def grew(self, rendering: R, extra: int) -> None:
        """A kept rendering gained `extra` bytes (its deflated form)."""
        if rendering.kept:
            self.bytes += extra
            self._trim()

    def _trim(self) -> None:
        while self.bytes > self.max_bytes and self._entries:
            _, gone = self._entries.popitem(last=False)
            gone.kept = False
            self.bytes -= gone.size
