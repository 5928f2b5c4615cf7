"""One computation per key for all the concurrent callers of this process.

When an approval wakes thousands of waiters, they all ask for the same delta page and
the same new checkpoint at once: the first caller starts the work, the others await
its result. Nothing is kept once it is done (the callers keep what they want).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, make: Callable[[], Awaitable[V]]) -> V:
        """`make()`'s result, shared with every caller of `key` while it runs."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # Shielded: a caller that goes away does not cancel the others' work.
        return await asyncio.shield(task)
