"""The feed (PROTOCOL.md section 8): snapshot pages, then deltas, with long-poll.

A node sees `mesh` decisions when its tenant has `mesh`, and `tenant` decisions of
its own tenant only: every query filters by the caller's scopes, computed from its
current entitlement when the page is served. See store/feed.py for why a client
following cursors can never skip an event.

The feed serves the sequenced rows, so every event carries its place in the
transparency log (`leaf`) and every page the checkpoints that cover its events
(PROTOCOL.md 8 r2, 15 r2): an event is exactly its leaf (less `event`), and a page
ends before an id would come twice, so a node following its feed is served every
leaf of its logs, in order. What commits is sequenced within a round (a quarter
second); a read that finds feed events waiting beyond the sequencer's position has
them sequenced first (`CatchUp`), so an answer is as fresh as a read of the log.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

from honeymesh_client.protocol.tlogleaf import log_of_scope

from .. import views
from ..callers import NodeCaller, ReaderCaller
from ..clock import rfc3339
from ..cursor import CursorError, Position, decode, encode
from ..entitlements import TenantState
from ..errors import BadRequest, CursorExpired
from ..metrics import Metrics
from ..notify import FeedNotifier
from ..store import feed as feed_store
from ..tlog import LogKey
from . import sequencer, tlog
from .singleflight import SingleFlight
from .snapshots import Rendering, SnapshotCache, render

# While the listener is down, or events wait behind a running transaction, a waiter
# looks again this often instead of trusting a notification to come.
_RECHECK_SECONDS = 0.25


DeltaKey = tuple[int, int, tuple[str, ...], int]
# How long a read waits for what it found waiting to be sequenced (another replica's
# round, or a transaction still running) before it answers without it.
_CATCH_UP_SECONDS = 0.2
_CATCH_UP_STEP = 0.01
# Signed checkpoints kept per process, (log, size) -> note.
_CHECKPOINTS = 4096


class CatchUp:
    """Sequence what waits now, one round at a time per process however many requests
    ask (services/sequencer.py; another replica's round is waited for, briefly)."""

    def __init__(self, pool: Any, key: LogKey) -> None:
        self._pool = pool
        self._key = key
        self._task: asyncio.Task[None] | None = None

    async def __call__(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
            self._task.add_done_callback(lambda _t: setattr(self, "_task", None))
        await asyncio.shield(self._task)

    async def _run(self) -> None:
        deadline = time.monotonic() + _CATCH_UP_SECONDS
        while True:
            done, more = await sequencer.run_round(self._pool, self._key)
            if not more or time.monotonic() >= deadline:
                return
            if not done:
                await asyncio.sleep(_CATCH_UP_STEP)


class Checkpoints:
    """The hub's signed checkpoints, by (log, size), made once per process (LRU).

    Single-flight: when an approval wakes thousands of waiters, they all want the same
    new checkpoint at once; the first makes it (one root read, one signature) and the
    others await it. A request whose notes are all known takes no connection."""

    def __init__(self, key: LogKey, size: int = _CHECKPOINTS) -> None:
        self._key = key
        self._size = size
        self._notes: dict[tuple[str, int], str] = {}
        self._making: SingleFlight[tuple[str, int], str] = SingleFlight()

    async def notes(self, pool: Any, sizes: dict[str, int]) -> dict[str, str]:
        out: dict[str, str] = {}
        for log, size in sorted(sizes.items()):
            at = (log, size)
            found = self._notes.pop(at, None)
            if found is None:
                found = await self._making.run(at, partial(self._make, pool, log, size))
            self._notes[at] = found
            out[log] = found
        while len(self._notes) > self._size:
            del self._notes[next(iter(self._notes))]
        return out

    async def _make(self, pool: Any, log: str, size: int) -> str:
        async with pool.acquire() as conn:
            root = await tlog.root_at(conn, log, size)
        return self._key.checkpoint(log, size, root)


@dataclass(frozen=True, slots=True)
class DeltaShared:
    """A delta page as every node at one position with the same scopes gets it, but
    for the cursor (bound to each node): read, cut and rendered once."""

    pending: bool  # feed events wait beyond it
    full: bool  # more events than the limit followed the position
    shared: Rendering | None  # None: nothing new
    end: tuple[int, int] = (0, 0)  # where the next page starts
    added: int = 0
    removed: int = 0


class SharedReads:
    """One delta read and rendering for all the requests of this process that ask the
    same thing.

    When an approval wakes thousands of caught-up waiters, they all stand at the same
    position with the same scopes: the first starts the read, the others await its
    page instead of reading and rendering their own. The page is what any of them
    would have read at that moment, so the no-skip argument of store/feed.py holds
    unchanged; each request still appends its own node's cursor.
    """

    def __init__(self) -> None:
        self._reads: SingleFlight[DeltaKey, DeltaShared] = SingleFlight()

    async def delta(
        self, ctx: FeedContext, xid: int, seq: int, scopes: Sequence[str], limit: int
    ) -> DeltaShared:
        return await self._reads.run(
            (xid, seq, tuple(scopes), limit), partial(_shared_delta, ctx, xid, seq, scopes, limit)
        )


async def _shared_delta(
    ctx: FeedContext, xid: int, seq: int, scopes: Sequence[str], limit: int
) -> DeltaShared:
    async with ctx.pool.acquire() as conn:
        head, pending, rows, low = await feed_store.delta(conn, xid, seq, scopes, limit + 1)
    if (xid, seq) < low:
        raise _expired()
    full = len(rows) > limit
    # A page ends before an id would come twice, so every event (every leaf of the
    # node's logs) is served, and an id is in a page once (PROTOCOL.md 8, 15 r2).
    taken: list[Any] = []
    seen: set[UUID] = set()
    cut = full
    for row in rows[:limit]:
        if row["event"] is None or row["candidate_id"] in seen:
            cut = True
            break
        seen.add(row["candidate_id"])
        taken.append(row)
    if not taken:
        return DeltaShared(pending or cut, full, None)
    # A cut page ends at its last event; otherwise every visible sequenced event up to
    # the sequencer's position has been served, so the next page starts there.
    last = taken[-1]
    end = (int(last["xid"]), last["seq"]) if cut else head
    # Each event is its served text, made once by the sequencer (services/tlog.py).
    added: list[str] = []
    removed: list[str] = []
    sizes: dict[str, int] = {}
    for row in taken:
        (added if row["kind"] == "added" else removed).append(row["event"])
        log = log_of_scope(row["scope_key"])
        sizes[log] = max(sizes.get(log, 0), row["log_index"] + 1)
    notes = await ctx.checkpoints.notes(ctx.pool, sizes)
    shared = render(
        0, None, f"[{','.join(added)}]", cut, False, head, notes, f"[{','.join(removed)}]"
    )
    return DeltaShared(pending, full, shared, end, len(added), len(removed))


@dataclass(slots=True)
class FeedContext:
    pool: Any
    notifier: FeedNotifier
    mac_key: bytes
    metrics: Metrics
    reads: SharedReads
    snapshots: SnapshotCache
    catch_up: CatchUp
    checkpoints: Checkpoints


def scopes_of(caller: NodeCaller) -> list[str]:
    return _scopes_of_tenant(caller.identity.tenant)


def scopes_of_reader(caller: ReaderCaller) -> list[str]:
    """A reader sees exactly what a node of its tenant sees (PROTOCOL.md 13 r2)."""
    return _scopes_of_tenant(caller.tenant)


def _scopes_of_tenant(tenant: TenantState) -> list[str]:
    scopes = [str(tenant.tenant_id)]
    if "mesh" in tenant.features:
        scopes.append("mesh")
    return scopes


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A feed page: the rendering every node asking for it gets but for the cursor
    (services/snapshots.py), or, with none, an empty page."""

    cursor: str
    more: bool
    reset: bool
    shared: Rendering | None = None

    def body(self) -> bytes:
        if self.shared is not None:
            return self.shared.body(self.cursor)
        return json.dumps(
            {
                "cursor": self.cursor,
                "more": self.more,
                "reset": self.reset,
                "added": [],
                "removed": [],
                "checkpoints": {},
            }
        ).encode()


async def _fresh_head(ctx: FeedContext) -> tuple[int, int]:
    """The sequencer's position, once what waits beyond it was sequenced."""
    async with ctx.pool.acquire() as conn:
        head, pending = await feed_store.head(conn)
    if pending:
        await ctx.catch_up()
        async with ctx.pool.acquire() as conn:
            head, _ = await feed_store.head(conn)
    return head


async def _snapshot_page(
    ctx: FeedContext, caller: NodeCaller, position: Position | None, limit: int
) -> FeedPage:
    scopes = scopes_of(caller)
    reset = position is None
    after = None if position is None else position.after
    if position is not None:
        at = (position.xid, position.seq)
        key = SnapshotCache.key(scopes, at, after, limit, reset)
        if ctx.snapshots.peek(key) is None:
            # A page to read needs the log kept back to P. One already rendered as of P
            # is that page whatever was compacted since; the delta its last page leads
            # to checks the watermark itself, so no event can be skipped.
            async with ctx.pool.acquire() as conn:
                await _check_retained(conn, *at)
    else:
        at = await _fresh_head(ctx)
        newest = ctx.snapshots.newest_first(scopes, limit)
        if newest is not None and newest < at:
            async with ctx.pool.acquire() as conn:
                if await feed_store.unchanged_since(conn, *newest, scopes):
                    # Nothing this node may see was sequenced since that page's
                    # position: a snapshot as of then is one as of now.
                    at = newest
        key = SnapshotCache.key(scopes, at, after, limit, reset)

    async def make() -> Rendering:
        async with ctx.pool.acquire() as conn:
            count, last_id, added_json, of, more = await feed_store.snapshot(
                conn, scopes, *at, after, limit
            )
            # Checkpoints as of the position cover every event of the snapshot; the
            # last page has them for every visible log (PROTOCOL.md 15 r2).
            sizes = await feed_store.log_sizes(conn, *at, scopes if not more else of)
        notes = await ctx.checkpoints.notes(
            ctx.pool, {log_of_scope(scope): size for scope, size in sizes.items()}
        )
        return render(count, last_id, added_json, more, reset, at, notes)

    shared = await ctx.snapshots.get(key, make)
    # The last page continues at the position: every event up to it is in the set.
    epoch = caller.identity.tenant.visibility_epoch
    nxt = (
        Position("snapshot", at[0], at[1], shared.last_id, epoch)
        if shared.more
        else _delta(at[0], at[1], caller)
    )
    ctx.metrics.feed_served["snapshot"].inc(shared.count)
    cursor = encode(nxt, caller.node_id, ctx.mac_key)
    return FeedPage(cursor, shared.more, reset, shared)


# Smaller answers (an empty poll is about 100 bytes) go as they are: gzip would cost
# more than it saves. Larger ones than this are compressed off the event loop.
GZIP_MIN_BYTES = 1024
_GZIP_INLINE_BYTES = 64 * 1024


async def encoded(ctx: FeedContext, page: FeedPage, accepts_gzip: bool) -> tuple[bytes, bool]:
    """The page's body, gzipped when the client admits it and it is worth it; and
    whether it was. A snapshot page's shared part is compressed once per process."""
    if accepts_gzip and page.shared is not None and len(page.shared.shared) >= GZIP_MIN_BYTES:
        await ctx.snapshots.deflate(page.shared)
        return page.shared.gzip(page.cursor), True
    body = page.body()
    if not accepts_gzip or len(body) < GZIP_MIN_BYTES:
        return body, False
    if len(body) <= _GZIP_INLINE_BYTES:
        return gzip.compress(body, 6, mtime=0), True
    return await asyncio.to_thread(gzip.compress, body, 6, mtime=0), True


def _delta(xid: int, seq: int, caller: NodeCaller) -> Position:
    return Position("delta", xid, seq, epoch=caller.identity.tenant.visibility_epoch)


async def _check_retained(conn: Any, xid: int, seq: int) -> None:
    if (xid, seq) < await feed_store.watermark(conn):
        raise _expired()


def _expired() -> CursorExpired:
    return CursorExpired("The feed log behind this cursor was compacted; start again.")


async def _delta_page(
    ctx: FeedContext, caller: NodeCaller, position: Position, limit: int, catch_up: bool
) -> tuple[FeedPage | None, bool]:
    """A page of changes, or None when nothing is new (and whether news is pending).
    `catch_up`: sequence what waits first (a request that will not wait for the
    sequencer's notification)."""
    scopes = scopes_of(caller)
    at = (position.xid, position.seq)
    page = await ctx.reads.delta(ctx, *at, scopes, limit)
    if catch_up and page.pending and not page.full:
        # Feed events wait beyond the sequencer's position: sequence them first.
        await ctx.catch_up()
        page = await ctx.reads.delta(ctx, *at, scopes, limit)
    if page.shared is None:
        return None, page.pending
    if page.added:
        ctx.metrics.feed_served["added"].inc(page.added)
    if page.removed:
        ctx.metrics.feed_served["removed"].inc(page.removed)
    cursor = encode(_delta(*page.end, caller), caller.node_id, ctx.mac_key)
    return FeedPage(cursor, page.shared.more, False, page.shared), page.pending


async def read(
    ctx: FeedContext, caller: NodeCaller, cursor: str | None, limit: int, wait: float
) -> FeedPage:
    if not cursor:
        return await _snapshot_page(ctx, caller, None, limit)
    try:
        position = decode(cursor, caller.node_id, ctx.mac_key)
    except CursorError as exc:
        raise BadRequest(
            f"The cursor is not valid for this node: {exc}.",
            errors=[{"pointer": "/query/cursor", "detail": str(exc)}],
        ) from None
    if position.epoch != caller.identity.tenant.visibility_epoch:
        # What this node may see shrank since the cursor was issued (PROTOCOL.md 8 r2):
        # start again from a snapshot, so it drops what it may no longer enforce.
        return await _snapshot_page(ctx, caller, None, limit)
    if position.kind == "snapshot":
        return await _snapshot_page(ctx, caller, position, limit)
    deadline = time.monotonic() + wait
    scopes = scopes_of(caller)
    while True:
        page, pending = await _delta_page(ctx, caller, position, limit, wait == 0)
        if page is not None:
            return page
        remaining = deadline - time.monotonic()
        if remaining <= 0 or ctx.notifier.closing:
            return FeedPage(cursor, False, False)
        step = remaining
        if pending or not ctx.notifier.connected.is_set():
            step = min(remaining, _RECHECK_SECONDS)
        ctx.metrics.feed_waiters.inc()
        try:
            await ctx.notifier.wait(scopes, step)
        finally:
            ctx.metrics.feed_waiters.dec()


async def provenance(
    ctx: FeedContext, caller: NodeCaller, candidate_id: UUID
) -> dict[str, Any] | None:
    async with ctx.pool.acquire() as conn:
        candidate, signals = await feed_store.provenance(conn, candidate_id, scopes_of(caller))
    if candidate is None:
        return None
    return {
        "id": str(candidate["id"]),
        "indicator": {"type": candidate["indicator_type"], "value": candidate["indicator_value"]},
        "signals": [
            {
                "keyid": s["keyid"],
                "node_id": str(s["node_id"]),
                "received_at": rfc3339(s["received_at"]),
                "envelope": views.envelope(bytes(s["payload"]), bytes(s["sig"]), s["keyid"]),
            }
            for s in signals
        ],
    }
