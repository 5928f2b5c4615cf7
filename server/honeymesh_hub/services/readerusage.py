"""What each reader key used (issue #15): polls served on the reader routes, the
decisions in those answers, and the time of its last authenticated request.

Counted per process in a bounded dict, never written per request: `flush` adds what
was counted to `reader_keys` in one statement (store/readers.add_usage), every few
seconds (app.py) and at shutdown, so every replica's counts add up in PostgreSQL. At
most `cap` distinct keys are held; a new key past that hands the held counts to a
flush at once (one at a time; while it runs, the counts of keys not held yet are
dropped and counted in `honeymesh_reader_usage_dropped`). A failed flush puts its
counts back as far as the cap allows; they are figures, never worth a request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ..metrics import Metrics
from ..store import readers as reader_store

log = logging.getLogger("honeymesh.readerusage")

CAP = 10_000


@dataclass(slots=True)
class Usage:
    polls: int
    decisions: int
    seen: datetime


class ReaderUsage:
    def __init__(self, pool: Any, metrics: Metrics, cap: int = CAP) -> None:
        self._pool = pool
        self._metrics = metrics
        self._cap = cap
        self._held: dict[UUID, Usage] = {}
        self._early: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._held)

    def seen(self, key_id: UUID, now: datetime) -> None:
        """An authenticated request of the key."""
        self._add(key_id, 0, 0, now)

    def served(self, key_id: UUID, surface: str, decisions: int, now: datetime) -> None:
        """An answer on a reader route (`surface`) holding `decisions` decisions."""
        self._metrics.reader_polls.labels(surface).inc()
        if decisions:
            self._metrics.reader_decisions.labels(surface).inc(decisions)
        self._add(key_id, 1, decisions, now)

    def _add(self, key_id: UUID, polls: int, decisions: int, now: datetime) -> None:
        usage = self._held.get(key_id)
        if usage is None:
            if len(self._held) >= self._cap and not self._flush_early():
                self._metrics.reader_usage_dropped.inc()
                return
            self._held[key_id] = Usage(polls, decisions, now)
            return
        usage.polls += polls
        usage.decisions += decisions
        usage.seen = max(usage.seen, now)

    def _flush_early(self) -> bool:
        """Full: hand the held counts to a flush now; False while one still runs."""
        if self._early is not None and not self._early.done():
            return False
        batch, self._held = self._held, {}
        self._early = asyncio.get_running_loop().create_task(
            self._write(batch), name="reader-usage-flush"
        )
        return True

    async def flush(self) -> int:
        """Write what is held (and wait for an early flush under way); the keys written."""
        early = self._early
        if early is not None:
            await asyncio.shield(early)
        batch, self._held = self._held, {}
        await self._write(batch)
        return len(batch)

    async def _write(self, batch: dict[UUID, Usage]) -> None:
        if not batch:
            return
        ids = sorted(batch)
        try:
            async with self._pool.acquire() as conn:
                await reader_store.add_usage(
                    conn,
                    ids,
                    [batch[i].polls for i in ids],
                    [batch[i].decisions for i in ids],
                    [batch[i].seen for i in ids],
                )
        except Exception:  # figures only: put them back for the next round
            log.warning("writing reader key usage failed", exc_info=True)
            for key_id in ids:
                usage = batch[key_id]
                self._merge(key_id, usage)

    def _merge(self, key_id: UUID, usage: Usage) -> None:
        held = self._held.get(key_id)
        if held is None:
            if len(self._held) >= self._cap:
                self._metrics.reader_usage_dropped.inc()
                return
            self._held[key_id] = usage
            return
        held.polls += usage.polls
        held.decisions += usage.decisions
        held.seen = max(held.seen, usage.seen)
