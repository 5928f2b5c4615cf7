"""Group commit, per process: concurrent small writes gathered into one statement.

A one-row statement costs PostgreSQL nearly as much as a hundred rows: a statement, a
transaction, a commit. So concurrent calls in one worker are gathered and written by
one batched statement, each caller waiting for that statement's commit: what it is
told still follows its own commit. Two users:

- `StoreGroups`: single publishes, stored by the batched signals statement
  (`store.signals.store_parts`), so a single publish's 202 still means committed;
- `NonceGroups`: every signed request's nonce (admission.py), spent by one insert.

Bounds: a group holds at most `max_size` units. A call that finds no statement of its
kind in flight is written at once (an idle hub adds no latency); otherwise it waits
for the statement in flight to end, or `max_wait` at most, whichever is first. So the
queue never holds more than `max_size` units and no timer outlives `max_wait`.

One call never fails another: a statement is one transaction, so a failed group (a
deadlock, a bad row) applied nothing, and each of its calls is then written alone, in
turn, getting the outcome it would have had alone.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..store import nonces as nonce_store
from ..store import signals as signal_store
from ..store.signals import StorePart

log = logging.getLogger("honeymesh.groupcommit")

MAX_SIZE = 64
MAX_WAIT = 0.002

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class Groups(Generic[T, R]):
    """Gathers concurrent `submit`s of this process; `together(items)` writes a group
    in one statement and answers each item, in order."""

    def __init__(
        self,
        together: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_size: int = MAX_SIZE,
        max_wait: float = MAX_WAIT,
        weight: Callable[[T], int] = lambda _item: 1,
        name: str = "group",
    ) -> None:
        self._together = together
        self._weight = weight
        self._name = name
        self.max_size = max_size
        self.max_wait = max_wait
        self._queue: list[_Waiting[T, R]] = []
        self._size = 0  # units queued
        self._timer: asyncio.TimerHandle | None = None
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """`item`'s answer, once the statement that wrote it has committed."""
        loop = asyncio.get_running_loop()
        waiting: _Waiting[T, R] = _Waiting(item, loop.create_future())
        self._queue.append(waiting)
        self._size += self._weight(item)
        if self._size >= self.max_size or self._inflight == 0:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._flush)
        return await waiting.future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group = [w for w in self._queue if not w.future.done()]
        self._queue, self._size = [], 0
        if not group:
            return
        self._inflight += 1
        task = asyncio.get_running_loop().create_task(self._run(group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, group: list[_Waiting[T, R]]) -> None:
        try:
            if len(group) == 1:
                await self._alone(group[0])
            else:
                try:
                    answers = await self._together([w.item for w in group])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # nothing of the group was applied
                    log.warning("%s of %d failed (%r); each alone", self._name, len(group), exc)
                    for w in group:
                        await self._alone(w)
                else:
                    for w, answer in zip(group, answers, strict=True):
                        if not w.future.done():
                            w.future.set_result(answer)
        except asyncio.CancelledError:
            for w in group:
                w.future.cancel()
            raise
        finally:
            self._inflight -= 1
            if self._queue:
                self._flush()

    async def _alone(self, w: _Waiting[T, R]) -> None:
        try:
            [answer] = await self._together([w.item])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not w.future.done():
                w.future.set_exception(exc)
        else:
            if not w.future.done():
                w.future.set_result(answer)


class StoreGroups(Groups[StorePart, list[Any]]):
    """Single publishes of this process, stored together. A `(node, id)` sent by two
    requests of one group is stored once, for the first: the other finds no row of
    its own and answers `duplicate`, after the same commit."""

    def __init__(
        self,
        pool: Any,
        qualify_confidence: int,
        *,
        max_size: int = MAX_SIZE,
        max_wait: float = MAX_WAIT,
    ) -> None:
        super().__init__(
            self._store,
            max_size=max_size,
            max_wait=max_wait,
            weight=lambda part: len(part.rows),
            name="group store of publishes",
        )
        self._pool = pool
        self._qualify = qualify_confidence

    async def store(self, part: StorePart) -> list[Any]:
        """`part`'s newly stored signals (as `store.signals.store_parts` returns them),
        once the statement that stored them has committed."""
        return await self.submit(part)

    async def _store(self, group: list[StorePart]) -> list[list[Any]]:
        owner: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        parts = []
        for i, p in enumerate(group):
            rows = [r for r in p.rows if owner.setdefault((p.node_id, r.signal_uuid), i) == i]
            parts.append(StorePart(rows, p.node_id, p.tenant_id, p.now))
        async with self._pool.acquire() as conn:
            stored = await signal_store.store_parts(conn, parts, qualify_confidence=self._qualify)
        per_request: list[list[Any]] = [[] for _ in group]
        for row in stored:
            per_request[owner[(row["node_id"], row["signal_uuid"])]].append(row)
        return per_request


# (keyid, nonce, the request's time)
NonceUse = tuple[str, str, datetime]


class NonceGroups(Groups[NonceUse, bool]):
    """Every signed request's nonce, spent together with the others of this process
    in flight: True when the nonce is new for its key (PROTOCOL.md 2 r2). The same
    (keyid, nonce) twice in one group is new for the first only."""

    def __init__(
        self, pool: Any, ttl_seconds: int, *, max_size: int = MAX_SIZE, max_wait: float = MAX_WAIT
    ) -> None:
        super().__init__(self._spend, max_size=max_size, max_wait=max_wait, name="nonce group")
        self._pool = pool
        self._ttl = ttl_seconds

    async def spend(self, keyid: str, nonce: str, now: datetime) -> bool:
        return await self.submit((keyid, nonce, now))

    async def _spend(self, uses: list[NonceUse]) -> list[bool]:
        first: dict[tuple[str, str], NonceUse] = {}
        for use in uses:
            first.setdefault((use[0], use[1]), use)
        async with self._pool.acquire() as conn:
            fresh = await nonce_store.remember_many(conn, list(first.values()), self._ttl)
        answers = []
        for use in uses:
            key = (use[0], use[1])
            answers.append(first[key] is use and key in fresh)
        return answers
