"""Expiry (PROTOCOL.md section 7): an approved candidate whose `expires_at` passed
becomes `expired`, with `removed` (reason `expired`) in the feed, audited by
`rule:expiry`, in the transaction that expires it.

`sweep` is the whole job and is idempotent: an expired candidate is no longer
`approved`, so a second sweep finds nothing. Every replica runs `run_forever`; the
sweeps take turns through a transaction-level advisory lock (`pg_try_advisory_xact_lock`
in the background, so a replica that finds another sweeping skips its round), and
lock candidates in batches; a background sweep skips a candidate that a publish or a
reviewer holds (`SKIP LOCKED`) and takes it next round, once that change committed.

Time is the app's clock, so tests drive `sweep` with a ManualClock and no sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from ..clock import Clock, to_datetime
from ..lifecycle import Move, Trigger, move
from ..metrics import Metrics
from ..store import review as review_store
from . import decisions

log = logging.getLogger("honeymesh.expiry")

SWEEP_INTERVAL_SECONDS = 5.0
BATCH = 500
ACTOR = "rule:expiry"


async def sweep(
    pool: Any,
    now: datetime,
    *,
    metrics: Metrics | None = None,
    batch: int = BATCH,
    wait: bool = True,
) -> int:
    """Expire every approved candidate due at `now`; return how many this call expired.

    `wait=True` (a direct call) waits for a sweep running elsewhere and for candidates
    another transaction holds, so on return nothing due at `now` is still approved.
    `wait=False` (the background task) skips its round, or a held candidate, instead.
    """
    total = 0
    async with pool.acquire() as conn:
        if metrics is not None:
            oldest = await review_store.oldest_overdue(conn, now)
            metrics.sweeper_lag.set((now - oldest).total_seconds() if oldest else 0.0)
        while True:
            async with conn.transaction():
                if not await review_store.sweep_turn(conn, wait=wait):
                    break
                rows = await review_store.due_expiries(conn, now, batch, skip_locked=not wait)
                expire = [
                    decisions.Taken(
                        row,
                        move(Trigger.EXPIRE, row["state"], reason="expired", rule="expiry"),
                        ACTOR,
                    )
                    for row in rows
                ]
                await decisions.write(conn, expire, now)
            total += len(rows)
            if not rows:
                break
    return total


def _expire(state: str) -> Move:
    return move(Trigger.EXPIRE, state, reason="expired", rule="expiry")


async def run_forever(
    pool: Any, clock: Clock, metrics: Metrics, interval: float = SWEEP_INTERVAL_SECONDS
) -> None:
    """The background sweeper every replica runs; cancelled by the app's cleanup."""
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await sweep(pool, to_datetime(clock()), metrics=metrics, wait=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next round retries; serving goes on
            log.warning("expiry sweep failed: %s", type(exc).__name__)
        else:
            if expired:
                log.info("expired %d decisions", expired)
