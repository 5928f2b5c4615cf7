"""TAXII 2.1 collections and pages for reader keys (PROTOCOL.md 14 r2).

A collection is one scope a reader key may see: its tenant's decisions (id = the
tenant id) and, with `mesh`, the mesh decisions (id made at the first migration).
Objects are the hub's identity (its `date_added` the hub's creation, before any
other) and one indicator per decision with a version per sequenced feed event
(services/sequencer.py: why `date_added` never goes back).

A page's body depends only on the collection's scope, the query, where it starts,
the request's origin (the provenance URLs) and the sequencer's `ord` its read saw,
never on the key: each is rendered once per process and kept in a byte-bounded LRU
that every reader asking the same thing is served from.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from .. import stix, taxii
from ..callers import ReaderCaller
from ..errors import NotFound
from ..store import taxii as taxii_store
from .feed import scopes_of_reader

_START = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Collection:
    id: UUID
    scope_key: str
    title: str
    description: str

    def resource(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "title": self.title,
            "description": self.description,
            "can_read": True,
            "can_write": False,
            "media_types": [taxii.STIX],
        }


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    first: str | None  # X-TAXII-Date-Added-First
    last: str | None  # X-TAXII-Date-Added-Last
    count: int  # objects (or versions) in the page

    @property
    def size(self) -> int:
        return len(self.body) + 64


PageKey = tuple[Any, ...]


@dataclass
class PageCache:
    """Rendered pages by key, least recently used out first, bounded by bytes."""

    max_bytes: int = DEFAULT_CACHE_BYTES
    bytes: int = 0
    hits: int = 0
    _entries: OrderedDict[PageKey, Page] = field(default_factory=OrderedDict)

    def get(self, key: PageKey) -> Page | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: PageKey, page: Page) -> None:
        if page.size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = page
        self.bytes += page.size
        while self.bytes > self.max_bytes:
            _, gone = self._entries.popitem(last=False)
            self.bytes -= gone.size


@dataclass(slots=True)
class Taxii:
    pool: Any
    mac_key: bytes
    hub_id: UUID
    mesh_collection: UUID
    created_at: datetime
    cache: PageCache = field(default_factory=PageCache)

    @property
    def identity_id(self) -> str:
        return f"identity--{self.hub_id}"

    def collections(self, caller: ReaderCaller) -> list[Collection]:
        found = []
        for scope in scopes_of_reader(caller):
            if scope == "mesh":
                found.append(
                    Collection(
                        self.mesh_collection,
                        "mesh",
                        "HoneyMesh mesh decisions",
                        "Blocks approved for every tenant with mesh sharing.",
                    )
                )
            else:
                found.append(
                    Collection(
                        UUID(scope),
                        scope,
                        "HoneyMesh tenant decisions",
                        "Blocks approved for this tenant only.",
                    )
                )
        return found

    def collection(self, caller: ReaderCaller, collection_id: str) -> Collection:
        for found in self.collections(caller):
            if str(found.id) == collection_id.lower():
                return found
        raise NotFound("No such collection.")

    async def page(
        self,
        collection: Collection,
        endpoint: str,
        query: taxii.Query,
        after: datetime | None,
        origin: str,
        object_id: str | None = None,
    ) -> Page:
        """A page of `endpoint` (`objects`, `manifest`, `object`, `versions`)."""
        start = max(after or _START, query.added_after or _START)
        ids, wants_identity, wants_indicators = self._wanted(query, object_id)
        async with self.pool.acquire() as conn:
            if object_id is not None:
                await self._check_object(conn, collection, object_id)
            hw = await taxii_store.high_water(conn)
            request_key = (endpoint, collection.scope_key, query, start, origin, object_id)
            cached = self.cache.get((*request_key, hw))
            if cached is not None:
                return cached
            items: list[tuple[datetime, str, str]] = []  # (date_added, id, rendered)
            if wants_identity and self.created_at > start and self._identity_version_wanted(query):
                items.append((self.created_at, self.identity_id, self._render_identity(endpoint)))
            rows: list[Any] = []
            if wants_indicators:
                versions, stamps = _versions_filter(query, endpoint)
                hw, rows = await taxii_store.page(
                    conn, collection.scope_key, start, ids, versions, stamps, query.limit + 1
                )
        for row in rows:
            items.append(
                (
                    row["date_added"],
                    f"indicator--{row['candidate_id']}",
                    self._render(row, endpoint, origin),
                )
            )
        more = len(items) > query.limit
        items = items[: query.limit]
        token = None
        if more:
            token = taxii.make_token(
                query, items[-1][0], collection.id, _token_scope(endpoint, object_id), self.mac_key
            )
        member = {
            "objects": "objects",
            "object": "objects",
            "manifest": "objects",
            "versions": "versions",
        }[endpoint]
        page = Page(
            taxii.page_json([text for _, _, text in items], more, token, member),
            stix.timestamp(items[0][0]) if items else None,
            stix.timestamp(items[-1][0]) if items else None,
            len(items),
        )
        # Kept under the ord its read saw, which names exactly what it held.
        self.cache.put((*request_key, hw), page)
        return page

    async def _check_object(self, conn: Any, collection: Collection, object_id: str) -> None:
        """404 unless `object_id` is the hub's identity or a decision of this collection."""
        parsed = taxii.object_id(object_id)
        if object_id == self.identity_id:
            return
        if (
            parsed is None
            or parsed[0] != "indicator"
            or not await taxii_store.exists(conn, collection.scope_key, parsed[1])
        ):
            raise NotFound("No such object in this collection.")

    def read_token(
        self, text: str, collection: Collection, endpoint: str, object_id: str | None
    ) -> tuple[taxii.Query, datetime]:
        return taxii.read_token(
            text, collection.id, _token_scope(endpoint, object_id), self.mac_key
        )

    def _wanted(
        self, query: taxii.Query, object_id: str | None
    ) -> tuple[Sequence[UUID] | None, bool, bool]:
        """(the decision ids to read or None for all, whether the identity and whether
        indicators can match)."""
        if query.matches_nothing():
            return None, False, False
        wanted_ids = (object_id,) if object_id is not None else query.ids
        if object_id is not None and query.ids and object_id not in query.ids:
            return None, False, False
        identity = query.wants_type("identity") and (
            not wanted_ids or self.identity_id in wanted_ids
        )
        decision_ids: list[UUID] = []
        for text in wanted_ids:
            parsed = taxii.object_id(text)
            if parsed is not None and parsed[0] == "indicator":
                decision_ids.append(parsed[1])
        indicators = query.wants_type("indicator") and (not wanted_ids or bool(decision_ids))
        return (decision_ids or None), identity, indicators

    def _identity_version_wanted(self, query: taxii.Query) -> bool:
        if isinstance(query.versions, tuple):
            return self.created_at in query.versions
        return True

    def _render_identity(self, endpoint: str) -> str:
        if endpoint == "versions":
            return _quoted(stix.timestamp(self.created_at))
        if endpoint == "manifest":
            return stix.to_json(
                stix.manifest_record(self.identity_id, self.created_at, self.created_at)
            )
        return stix.to_json(stix.identity(self.hub_id, self.created_at))

    def _render(self, row: Any, endpoint: str, origin: str) -> str:
        object_id = f"indicator--{row['candidate_id']}"
        if endpoint == "versions":
            return _quoted(stix.timestamp(row["time"]))
        if endpoint == "manifest":
            return stix.to_json(stix.manifest_record(object_id, row["date_added"], row["time"]))
        return stix.to_json(
            stix.indicator_version(
                version_of(row),
                identity_id=self.identity_id,
                provenance_url=f"{origin}/v1/decisions/{row['candidate_id']}/provenance",
            )
        )


def version_of(row: Any) -> stix.Version:
    """The STIX version a sequenced row stands for."""
    entry = row["entry"]
    return stix.Version(
        decision_id=row["candidate_id"],
        kind=row["kind"],
        time=row["time"],
        created=row["created"],
        # A removal whose addition was compacted before the sequencer ran has no times
        # of its own: it stands from its first version to its removal.
        approved_at=_time(entry.get("approved_at"), row["created"]),
        expires_at=_time(entry.get("expires_at"), row["time"]),
        indicator_type=entry["indicator"]["type"],
        indicator_value=entry["indicator"]["value"],
        scenarios=tuple(entry.get("scenarios") or ()),
        confidence=int(entry.get("confidence") or 0),
    )


def _time(text: str | None, default: datetime) -> datetime:
    return taxii.parse_timestamp(text) if text else default


def _versions_filter(query: taxii.Query, endpoint: str) -> tuple[str, Sequence[datetime]]:
    if endpoint == "versions":
        return "all", ()
    if isinstance(query.versions, tuple):
        return "list", query.versions
    return query.versions, ()


def _token_scope(endpoint: str, object_id: str | None) -> str:
    return endpoint if object_id is None else f"{endpoint}:{object_id}"


def _quoted(text: str) -> str:
    return f'"{text}"'
