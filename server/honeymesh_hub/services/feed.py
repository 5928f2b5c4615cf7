"""The feed (PROTOCOL.md section 8): snapshot pages, then deltas, with long-poll.

A node sees `mesh` decisions when its tenant has `mesh`, and `tenant` decisions of
its own tenant only: every query filters by the caller's scopes, computed from its
current entitlement when the page is served. See store/feed.py for why a client
following cursors can never skip an event.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from .. import views
from ..callers import NodeCaller, ReaderCaller
from ..clock import rfc3339
from ..cursor import CursorError, Position, decode, encode
from ..entitlements import TenantState
from ..errors import BadRequest, CursorExpired
from ..metrics import Metrics
from ..notify import FeedNotifier
from ..store import feed as feed_store
from .snapshots import Rendering, SnapshotCache, render

# While the listener is down, or events wait behind a running transaction, a waiter
# looks again this often instead of trusting a notification to come.
_RECHECK_SECONDS = 0.25


DeltaKey = tuple[int, int, tuple[str, ...], int]
DeltaRead = tuple[int, bool, list[Any]]


class SharedReads:
    """One delta query for all the requests of this process that ask the same thing.

    When an approval wakes thousands of caught-up waiters, they all stand at the same
    position with the same scopes: the first starts the query, the others await its
    result instead of running their own. The answer is what any of them would have
    read at that moment, so the no-skip argument of store/feed.py holds unchanged;
    each request still encodes its own node's cursor.
    """

    def __init__(self) -> None:
        self._inflight: dict[DeltaKey, asyncio.Task[DeltaRead]] = {}

    async def delta(
        self, pool: Any, xid: int, seq: int, scopes: Sequence[str], limit: int
    ) -> DeltaRead:
        key = (xid, seq, tuple(scopes), limit)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(_read_delta(pool, xid, seq, scopes, limit))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # Shielded: a requester that goes away does not cancel the others' read.
        return await asyncio.shield(task)


async def _read_delta(
    pool: Any, xid: int, seq: int, scopes: Sequence[str], limit: int
) -> DeltaRead:
    async with pool.acquire() as conn:
        await _check_retained(conn, xid, seq)
        return await feed_store.delta(conn, xid, seq, scopes, limit)


@dataclass(slots=True)
class FeedContext:
    pool: Any
    notifier: FeedNotifier
    mac_key: bytes
    metrics: Metrics
    reads: SharedReads
    snapshots: SnapshotCache


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


def _removed(entry: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {"id": entry["id"], "indicator": entry["indicator"], "reason": reason or "retracted"}


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A feed page; `added_json` is the JSON text of the `added` array, made once
    and copied into the answer as it is. A snapshot page has `shared` instead: the
    rendering every node pulling that page gets (services/snapshots.py)."""

    cursor: str
    more: bool
    reset: bool
    added_json: str
    removed: list[dict[str, Any]]
    shared: Rendering | None = None

    def body(self) -> bytes:
        if self.shared is not None:
            return self.shared.body(self.cursor)
        head = json.dumps({"cursor": self.cursor, "more": self.more, "reset": self.reset})
        removed = json.dumps(self.removed)
        return f'{head[:-1]}, "added": {self.added_json}, "removed": {removed}}}'.encode()


async def _snapshot_page(
    ctx: FeedContext, caller: NodeCaller, position: Position | None, limit: int
) -> FeedPage:
    scopes = scopes_of(caller)
    reset = position is None
    after = None if position is None else position.after
    key = SnapshotCache.key(scopes, after, limit, reset)
    shared = await ctx.snapshots.current(key) if position is None else None
    async with ctx.pool.acquire() as conn:
        if position is not None:
            boundary = position.xid
            await _check_retained(conn, boundary, 0)
        elif shared is not None and await feed_store.unchanged_since(conn, shared.xmin, scopes):
            # Nothing this node may see changed since that page was read: it is what a
            # read now would give, and its xmin a boundary as good as now's.
            boundary = shared.xmin
            ctx.snapshots.hits += 1
        else:
            boundary = await feed_store.boundary(conn)

    async def make() -> Rendering:
        async with ctx.pool.acquire() as conn:
            # Taken before the read: every transaction below it is in what is read.
            xmin = await feed_store.boundary(conn)
            count, last_id, added_json, more = await feed_store.snapshot(conn, scopes, after, limit)
        return render(count, last_id, added_json, more, reset, xmin)

    if shared is None or shared.xmin < boundary:
        shared = await ctx.snapshots.get(key, boundary, make)
    # The last page continues at the boundary: everything that committed from a
    # transaction older than it is in the set just served.
    epoch = caller.identity.tenant.visibility_epoch
    nxt = (
        Position("snapshot", boundary, 0, shared.last_id, epoch)
        if shared.more
        else _delta(boundary, 0, caller)
    )
    ctx.metrics.feed_events.labels("snapshot").inc(shared.count)
    cursor = encode(nxt, caller.node_id, ctx.mac_key)
    return FeedPage(cursor, shared.more, reset, "", [], shared)


# Smaller answers (an empty poll is about 100 bytes) go as they are: gzip would cost
# more than it saves. Larger ones than this are compressed off the event loop.
GZIP_MIN_BYTES = 1024
_GZIP_INLINE_BYTES = 64 * 1024


async def encoded(ctx: FeedContext, page: FeedPage, accepts_gzip: bool) -> tuple[bytes, bool]:
    """The page's body, gzipped when the client admits it and it is worth it; and
    whether it was. A snapshot page's shared part is compressed once per process."""
    if accepts_gzip and page.shared is not None:
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
    low_xid, low_seq = await feed_store.watermark(conn)
    if (xid, seq) < (low_xid, low_seq):
        raise CursorExpired("The feed log behind this cursor was compacted; start again.")


async def _delta_page(
    ctx: FeedContext, caller: NodeCaller, position: Position, limit: int
) -> tuple[FeedPage | None, bool]:
    """A page of changes, or None when nothing is new (and whether news is pending)."""
    xmin, pending, rows = await ctx.reads.delta(
        ctx.pool, position.xid, position.seq, scopes_of(caller), limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    if not rows:
        return None, pending
    # A full page ends at its last event; otherwise every visible event of a finished
    # transaction (xid < xmin) has been served, so the next page starts at xmin.
    last = rows[-1]
    nxt = _delta(int(last["xid"]), last["seq"], caller) if more else _delta(xmin, 0, caller)
    # Within a page an id appears once, as it stands at the page's cursor.
    latest: dict[UUID, Any] = {}
    for row in rows:
        latest.pop(row["candidate_id"], None)
        latest[row["candidate_id"]] = row
    added = [r["entry"] for r in latest.values() if r["kind"] == "added"]
    removed = [_removed(r["entry"], r["reason"]) for r in latest.values() if r["kind"] == "removed"]
    ctx.metrics.feed_events.labels("added").inc(len(added))
    ctx.metrics.feed_events.labels("removed").inc(len(removed))
    page = FeedPage(
        encode(nxt, caller.node_id, ctx.mac_key), more, False, json.dumps(added), removed
    )
    return page, pending


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
        page, pending = await _delta_page(ctx, caller, position, limit)
        if page is not None:
            return page
        remaining = deadline - time.monotonic()
        if remaining <= 0 or ctx.notifier.closing:
            return FeedPage(cursor, False, False, "[]", [])
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
