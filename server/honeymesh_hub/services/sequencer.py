"""The sequencer: one order of feed events that never goes back (PROTOCOL.md 14 r2).

The feed serves events in (xid, seq) order, only below the oldest running transaction
(store/feed.py), so that order never gains an event before one already served. It is
not an order in time: a transaction that began earlier can commit later. TAXII wants
a `date_added` per object that is strictly increasing in the order objects are served
and never at or before one already served, on every replica. So every replica runs
this loop, and one at a time (an advisory lock, taken without waiting) moves the
final events into `sequenced`:

- it takes only events below the oldest running transaction, in (xid, seq) order,
  after the last one sequenced: the sequenced rows are always a prefix of the feed's
  order, and nothing can later join that prefix;
- it gives each the next `ord` and a `date_added` of max(the database's clock, the
  last one + 1 us): strictly increasing, in one clock, whatever the replicas' clocks;
- it commits that batch before the next claimer can lock the row, and the next one
  starts from what it committed: a reader's snapshot that sees a batch sees every
  earlier one, so the rows visible to any reader are exactly those with `ord` up to
  some point, and a later row has a later `date_added` than any a reader saw.

A claimer that dies mid-round rolls back whole; the next starts from the same state.
A round runs on each feed notification (every transaction that writes feed events
sends one at commit, store/signals.py), so an event is sequenced well within a second
of its commit (unless a transaction runs longer than that, which holds the feed back
as well). Besides, a round runs every second while the listener is connected, and
every quarter second while it is not (then notifications are lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..store import sequencer as store
from ..store import tlog as tlog_store
from ..store.sequencer import Previous
from ..tlog import LogKey
from . import tlog

log = logging.getLogger("honeymesh.sequencer")

BATCH = 1000
ROUND_SECONDS = 0.25
# Between rounds when nothing waits and the listener hears every commit's notification:
# an idle hub then takes one round a second, not four, on every replica.
IDLE_SECONDS = 1.0
# While events wait behind a running transaction, look again this soon.
RETRY_SECONDS = 0.05
_TICK = timedelta(microseconds=1)


async def run_round(pool: Any, key: LogKey, *, batch: int = BATCH) -> tuple[int, bool]:
    """Sequence what is final now, and append it to the transparency log in the same
    transaction (services/tlog.py): (rows sequenced, whether events still wait)."""
    async with pool.acquire() as conn, conn.transaction():
        state = await store.claim(conn)
        if state is None:
            return 0, True  # another replica is sequencing; look again soon
        backlog = await tlog_store.unlogged(conn, batch)
        if backlog:
            # Rows sequenced before the log existed go in first, in their order.
            items = [
                (r["scope_key"], r["kind"], r["entry"], r["reason"], r["time"]) for r in backlog
            ]
            placed = await tlog.append(conn, key, items, state["now"])
            logged = [(r["ord"], *where) for r, where in zip(backlog, placed, strict=True)]
            await tlog_store.set_logged(conn, logged)
            return len(backlog), True
        xid, seq = int(state["xid"]), state["seq"]
        events = await store.final_events(conn, xid, seq, batch)
        if not events:
            return 0, await store.waiting(conn, xid, seq)
        rows = plan(events, state, await store.previous(conn, [e["candidate_id"] for e in events]))
        placed = await tlog.append(
            conn, key, [(r[5], r[6], r[8], r[7], r[9]) for r in rows], state["now"]
        )
        rows = [(*row, *where) for row, where in zip(rows, placed, strict=True)]
        last = events[-1]
        await store.append(conn, rows, (last["xid"], last["seq"], rows[-1][0], rows[-1][1]))
        more = len(events) == batch or await store.waiting(conn, int(last["xid"]), last["seq"])
        return len(rows), more


def plan(events: list[Any], state: Any, previous: dict[Any, Previous]) -> list[tuple[Any, ...]]:
    """The rows for `events`, in order. Pure: the order rules live here.

    `date_added` is strictly increasing; an event's `time` (a STIX version's
    `modified`) strictly increasing per candidate, and `created` its candidate's
    first approval. A removal's entry is the decision as it was last added (the feed's
    own `removed` view is cut from it), so every version can be rendered whole."""
    ord_, date_added = state["ord"], state["date_added"]
    now = state["now"]
    last = dict(previous)
    rows: list[tuple[Any, ...]] = []
    for event in events:
        ord_ += 1
        date_added = max(now, date_added + _TICK)
        candidate = event["candidate_id"]
        before = last.get(candidate)
        time = event["time"] if before is None else max(event["time"], before[0] + _TICK)
        created = time if before is None else before[1]
        entry = event["entry"]
        if event["kind"] == "removed" and before is not None:
            entry = {**before[2], **entry}
        last[candidate] = (time, created, entry)
        rows.append(
            (
                ord_,
                date_added,
                event["xid"],
                event["seq"],
                candidate,
                event["scope_key"],
                event["kind"],
                event["reason"],
                entry,
                time,
                created,
            )
        )
    return rows


async def run_forever(
    pool: Any,
    news: Callable[[float], Any],
    key: LogKey,
    listening: Callable[[], bool] = lambda: False,
) -> None:
    """Rounds on every feed notification (`news(timeout)` awaits one), at least every
    IDLE_SECONDS while `listening()` (ROUND_SECONDS otherwise), and again at once
    while a round leaves final events behind."""
    delay = ROUND_SECONDS
    while True:
        await news(delay)
        try:
            done, more = await run_round(pool, key)
        except asyncio.CancelledError:
            raise
        except Exception:  # the next round retries; serving goes on
            log.exception("sequencer round failed")
            delay = ROUND_SECONDS
            continue
        if done and more:
            delay = 0
        elif more:
            delay = RETRY_SECONDS
        else:
            delay = IDLE_SECONDS if listening() else ROUND_SECONDS
