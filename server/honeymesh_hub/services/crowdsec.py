"""CrowdSec bouncer streams and lookups (PROTOCOL.md 13.1).

A reader key has one position in PostgreSQL (`crowdsec_positions`), a point in the
feed log's (xid, seq) order, so any replica answers its next poll. A poll answers the
changes since that position, read as the feed reads them (store/feed.py: only events
of finished transactions, in (xid, seq) order, so no decision is ever skipped); a
startup poll, a key without a position, a position of an older visibility epoch, or
one behind the compacted log, answers every active decision the key may see, written
page by page as it is read. A bouncer keeps what it holds until told to delete it, so
an answer to a position of an older epoch (PROTOCOL.md 8 r2) also deletes what was
removed since that position, in every scope the tenant can have: a key cannot poll
while its tenant is suspended or has lost `mesh`, and what was retracted meanwhile
must not stay in its firewall. (No plan reads without `mesh`; one that did would also
need the withdrawn scope's active decisions deleted.) The route moves the position
(`Stream.delivered`) only once the whole answer was written; an undelivered answer is
served again.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from .. import crowdsec
from ..callers import ReaderCaller
from ..crowdsec import Filters, Lookup
from ..store import crowdsec as crowdsec_store
from ..store import feed as feed_store
from .feed import scopes_of_reader
from .startuppages import GzipWriter, Page, StartupPages

# Rows a startup page reads: what one page holds in memory, whatever the set's size.
PAGE = 1000
# Events a delta reads per query.
DELTA_PAGE = 5000


@dataclass(slots=True)
class Stream:
    """One stream answer: `chunks()` writes it, `delivered()` then moves the position."""

    pool: Any
    caller: ReaderCaller
    filters: Filters
    now: datetime
    startup: bool
    # Where the key stands once this answer is delivered.
    xid: int = 0
    seq: int = 0
    new: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    # Decisions written so far, in `new` and `deleted` together.
    served: int = 0
    # The process's shared startup pages (services/startuppages.py).
    pages: StartupPages = field(default_factory=StartupPages)

    async def chunks(self) -> AsyncIterator[bytes]:
        if not self.startup:
            self.served = len(self.new) + len(self.deleted)
            for part in crowdsec.stream_parts(self.new, self.deleted):
                yield part
            return
        yield b'{"new": ['
        first = True
        async for page in self._startup_pages():
            if page.count:
                self.served += page.count
                yield (b"" if first else b", ") + page.body
                first = False
        self.served += len(self.deleted)
        yield b'], "deleted": [' + b", ".join(map(_encoded, self.deleted)) + b"]}"

    async def gzip_chunks(self) -> AsyncIterator[bytes]:
        """A startup answer as one gzip member, its pages' deflate blocks shared."""
        assert self.startup
        gz = GzipWriter()
        yield gz.head()
        yield gz.fresh(b'{"new": [')
        first = True
        async for page in self._startup_pages():
            if page.count:
                self.served += page.count
                if not first:
                    yield gz.fresh(b", ")
                yield gz.shared(page.body, await self.pages.deflated(page))
                first = False
        self.served += len(self.deleted)
        yield gz.fresh(b'], "deleted": [' + b", ".join(map(_encoded, self.deleted)) + b"]}")
        yield gz.end()

    async def _startup_pages(self) -> AsyncIterator[Page]:
        """The active set in pages shared by every stream of the same scopes, filters
        and second (services/startuppages.py), each read after this one's boundary."""
        if self.filters.admits_nothing:
            return
        scopes = tuple(sorted(scopes_of_reader(self.caller)))
        second = self.now.replace(microsecond=0)
        after: int | None = None
        while True:
            key = _page_key(scopes, self.filters, after, second)
            page = await self.pages.get_after(
                key, self.xid, functools.partial(self._read_page, scopes, second, after)
            )
            yield page
            if not page.full or page.last_id is None:
                return
            after = page.last_id

    async def _read_page(
        self, scopes: tuple[str, ...], second: datetime, after: int | None
    ) -> Page:
        # A connection per page, never held while a client reads: a slow bouncer
        # costs no pooled connection between pages.
        async with self.pool.acquire() as conn:
            # Taken before the read: every transaction below it is in what is read.
            xmin = await feed_store.boundary(conn)
            types = sorted(self.filters.types)
            rows = await crowdsec_store.active_page(conn, list(scopes), types, second, after, PAGE)
        items = [
            _encoded(_active(r, second))
            for r in rows
            if self.filters.admits(r["indicator_type"], r["scenarios"])
            and crowdsec.remaining_seconds(r["expires_at"], second) >= 1
        ]
        last = rows[-1]["crowdsec_id"] if rows else None
        return Page(b", ".join(items), len(items), last, len(rows) == PAGE, xmin)

    async def delivered(self) -> None:
        async with self.pool.acquire() as conn:
            await crowdsec_store.save_position(
                conn,
                self.caller.key_id,
                self.xid,
                self.seq,
                self.caller.tenant.visibility_epoch,
                self.now,
            )


def _page_key(
    scopes: tuple[str, ...], filters: Filters, after: int | None, second: datetime
) -> tuple[Any, ...]:
    return (scopes, filters, after, second)


def _first_key(scopes: list[str], filters: Filters, now: datetime) -> tuple[Any, ...]:
    return _page_key(tuple(sorted(scopes)), filters, None, now.replace(microsecond=0))


def _encoded(item: dict[str, Any]) -> bytes:
    return crowdsec.json_bytes(item)


def _active(row: Any, now: datetime) -> dict[str, Any]:
    return crowdsec.decision(
        crowdsec_id=row["crowdsec_id"],
        uuid=str(row["id"]),
        indicator_type=row["indicator_type"],
        value=row["indicator_value"],
        scenarios=sorted(row["scenarios"]),
        expires_at=row["expires_at"],
        now=now,
    )


async def open_stream(
    pool: Any,
    caller: ReaderCaller,
    *,
    startup: bool,
    filters: Filters,
    now: datetime,
    pages: StartupPages | None = None,
) -> Stream:
    """The answer to one poll, its changes read (a delta) or about to be (startup)."""
    scopes = scopes_of_reader(caller)
    epoch = caller.tenant.visibility_epoch
    narrowed = False
    async with pool.acquire() as conn:
        stored = None if startup else await crowdsec_store.position(conn, caller.key_id)
        if stored is not None:
            low = await feed_store.watermark(conn)
            if (int(stored["xid"]), stored["seq"]) < low:
                # The log behind it was compacted: the whole set again.
                stored = None
            elif stored["epoch"] != epoch:
                # What the key may see shrank (PROTOCOL.md 8 r2): the whole set again,
                # and deletions for what it may have held and must not keep.
                narrowed = True
        if stored is None or narrowed:
            # Taken before the first page is read: every transaction below it is in
            # what the pages read, and whatever is not comes in the next delta.
            boundary = await feed_store.boundary(conn)
            if pages is not None:
                # Bouncers starting together share pages: a first page read since the
                # last change this key may see is what a read now would be, and its
                # xmin a boundary as good as now's (a lower one: never a skip).
                first = pages.peek(_first_key(scopes, filters, now))
                if (
                    first is not None
                    and first.xmin < boundary
                    and await crowdsec_store.unchanged_since(conn, first.xmin, scopes)
                ):
                    boundary = first.xmin
            stream = Stream(pool, caller, filters, now, True, boundary, 0)
            if pages is not None:
                stream.pages = pages
            if stored is None:
                return stream
    if narrowed:
        possible = [str(caller.tenant.tenant_id), "mesh"]
        events, _ = await _events(pool, int(stored["xid"]), stored["seq"], possible)
        last = {row["candidate_id"]: row for row in events}
        removals = [row for row in last.values() if row["kind"] == "removed"]
        _, stream.deleted = _changes(removals, filters, now)
        return stream
    events, nxt = await _events(pool, int(stored["xid"]), stored["seq"], scopes)
    stream = Stream(pool, caller, filters, now, False, *nxt)
    stream.new, stream.deleted = _changes(events, filters, now)
    return stream


async def _events(
    pool: Any, xid: int, seq: int, scopes: list[str]
) -> tuple[list[Any], tuple[int, int]]:
    """Every final event after (xid, seq) in `scopes`, and where the next read starts."""
    events: list[Any] = []
    while True:
        async with pool.acquire() as conn:
            xmin, rows = await crowdsec_store.delta(conn, xid, seq, scopes, DELTA_PAGE)
        events.extend(rows)
        if len(rows) < DELTA_PAGE:
            # Every final event visible to the key was read: continue at xmin.
            return events, (xmin, 0)
        xid, seq = int(rows[-1]["xid"]), rows[-1]["seq"]


def _changes(
    events: Iterable[Any], filters: Filters, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`new` and `deleted` of a delta: each decision as it stands at its last event;
    an extension (the bouncer held it) in both, so its timeout is refreshed."""
    latest: dict[UUID, Any] = {}
    first_time: dict[UUID, datetime] = {}
    for row in events:
        cid = row["candidate_id"]
        latest.pop(cid, None)
        latest[cid] = row
        first_time.setdefault(cid, row["time"])
    new: list[dict[str, Any]] = []
    deleted: list[dict[str, Any]] = []
    for cid, row in latest.items():
        entry = row["entry"]
        if not filters.admits(row["indicator_type"], row["scenarios"]):
            continue
        base = {
            "crowdsec_id": row["crowdsec_id"],
            "uuid": str(cid),
            "indicator_type": row["indicator_type"],
            "value": row["indicator_value"],
        }
        if row["kind"] == "removed":
            until = row["expires_at"] or now
            deleted.append(
                crowdsec.decision(
                    **base,
                    scenarios=sorted(row["scenarios"]),
                    expires_at=until,
                    now=now,
                    deleted=True,
                )
            )
            continue
        expires_at = _parse_time(entry["expires_at"])
        scenarios = sorted(entry["scenarios"])
        if _held(row, entry, first_time[cid]):
            deleted.append(
                crowdsec.decision(
                    **base, scenarios=scenarios, expires_at=expires_at, now=now, deleted=True
                )
            )
        if crowdsec.remaining_seconds(expires_at, now) >= 1:
            new.append(
                crowdsec.decision(**base, scenarios=scenarios, expires_at=expires_at, now=now)
            )
    return new, deleted


def _held(row: Any, entry: dict[str, Any], first_time: datetime) -> bool:
    """Whether the bouncer held this decision at its position: the candidate's last
    event before it was an addition; or, that event compacted away, the decision was
    approved before the first event of this delta (an extension, not an approval)."""
    if row["before"] is not None:
        return bool(row["before"] == "added")
    approved = entry.get("approved_at")
    return approved is not None and _parse_time(approved) < first_time.replace(microsecond=0)


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def lookup(
    pool: Any, caller: ReaderCaller, query: Lookup, now: datetime
) -> list[dict[str, Any]]:
    """The active decisions the key may see that contain (or lie within) the query's
    address or range."""
    if query.none:
        return []
    async with pool.acquire() as conn:
        rows = await crowdsec_store.containing(
            conn, scopes_of_reader(caller), query.network, query.contains, now
        )
    return [_active(r, now) for r in rows if crowdsec.remaining_seconds(r["expires_at"], now) >= 1]
