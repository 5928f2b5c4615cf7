"""Group commit for single publishes, per process.

A one-envelope publish costs PostgreSQL nearly as much as a batch of a hundred: a
statement, a transaction, a commit (an fsync). Concurrent single publishes in one
worker are therefore gathered and stored by the one batched statement
(`store.signals.store_parts`), each request waiting for that statement's commit: its
202 still means committed.

Bounds: a group holds at most `max_size` envelopes. A request that finds no statement
of the group in flight is stored at once (an idle hub adds no latency); otherwise it
waits for the statement in flight to end, or `max_wait` at most, whichever is first. So
the queue never holds more than `max_size` entries and no timer outlives `max_wait`.

One request never fails another: the statement is one transaction, so a failed group
(a deadlock, a bad row) applied nothing, and each of its requests is then stored
alone, in turn, getting the outcome it would have had alone. A `(node, id)` sent by two
requests of one group is stored once, for the first: the other finds no row of its own
and answers `duplicate`, after the same commit.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from ..store import signals as signal_store
from ..store.signals import StorePart

log = logging.getLogger("honeymesh.publish")

MAX_SIZE = 64
MAX_WAIT = 0.002


@dataclass(slots=True)
class _Waiting:
    part: StorePart
    future: asyncio.Future[list[Any]]


class StoreGroups:
    """Gathers concurrent single publishes of this process into one statement."""

    def __init__(
        self,
        pool: Any,
        qualify_confidence: int,
        *,
        max_size: int = MAX_SIZE,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self._pool = pool
        self._qualify = qualify_confidence
        self.max_size = max_size
        self.max_wait = max_wait
        self._queue: list[_Waiting] = []
        self._size = 0  # envelopes queued
        self._timer: asyncio.TimerHandle | None = None
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def store(self, part: StorePart) -> list[Any]:
        """`part`'s newly stored signals (as `store.signals.store` returns them), once
        the statement that stored them has committed."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(part, loop.create_future())
        self._queue.append(waiting)
        self._size += len(part.rows)
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

    async def _run(self, group: list[_Waiting]) -> None:
        try:
            if len(group) == 1:
                await self._alone(group[0])
            else:
                try:
                    per_request = await self._together(group)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # nothing of the group was applied
                    log.warning(
                        "group store of %d publishes failed (%r); each alone", len(group), exc
                    )
                    for w in group:
                        await self._alone(w)
                else:
                    for w, rows in zip(group, per_request, strict=True):
                        if not w.future.done():
                            w.future.set_result(rows)
        except asyncio.CancelledError:
            for w in group:
                w.future.cancel()
            raise
        finally:
            self._inflight -= 1
            if self._queue:
                self._flush()

    async def _alone(self, w: _Waiting) -> None:
        try:
            async with self._pool.acquire() as conn:
                rows = await signal_store.store_parts(
                    conn, [w.part], qualify_confidence=self._qualify
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not w.future.done():
                w.future.set_exception(exc)
        else:
            if not w.future.done():
                w.future.set_result(rows)

    async def _together(self, group: list[_Waiting]) -> list[list[Any]]:
        owner: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        parts = []
        for i, w in enumerate(group):
            p = w.part
            rows = [r for r in p.rows if owner.setdefault((p.node_id, r.signal_uuid), i) == i]
            parts.append(StorePart(rows, p.node_id, p.tenant_id, p.now))
        async with self._pool.acquire() as conn:
            stored = await signal_store.store_parts(conn, parts, qualify_confidence=self._qualify)
        per_request: list[list[Any]] = [[] for _ in group]
        for row in stored:
            per_request[owner[(row["node_id"], row["signal_uuid"])]].append(row)
        return per_request
