"""Calls made in one turn of the event loop, sent to Redis together.

When an approval wakes a thousand waiters, each would end its waiter slot with its own
Redis round trip: a connection from the pool, a write, a read, in Python, per call
(redisconn.py). A `TurnBatch` collects the calls made until the loop's next turn and
runs them as one batch (one Redis call), at most `max_size` at a time. Each caller still
awaits its own answer, so nothing goes on before Redis has answered it; the wait this
adds is one turn of the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_SIZE = 1000


class TurnBatch(Generic[T, R]):
    """`run(items)` answers a batch of items, in order; it is called with every item
    submitted in one turn of the loop (`max_size` at most per call)."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], max_size: int = MAX_SIZE):
        self._run = run
        self._max_size = max_size
        self._items: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._send())
        return await future

    async def _send(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's calls join
        batch, self._items, self._task = self._items, [], None
        for start in range(0, len(batch), self._max_size):
            chunk = batch[start : start + self._max_size]
            try:
                answers = await self._run([item for item, _ in chunk])
            except asyncio.CancelledError:
                for _, future in batch[start:]:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in chunk:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(chunk, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
