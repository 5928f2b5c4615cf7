"""TAXII 2.1 requests, pure (PROTOCOL.md 14 r2): media types, Accept, the query of an
objects or manifest request, and the `next` token that carries it.

A query is normalised once (`Query`); `next` is that query plus where the page ended
(the `date_added` of its last object), MAC'd with the hub's cursor key and bound to
the collection, so a client that follows `next` without repeating its filters gets
the same result, and an altered token is refused. A token is not bound to the reader
key: it grants nothing its holder could not ask for with `added_after` itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from uuid import UUID

from .stix import MEDIA_TYPE, timestamp

TAXII = "application/taxii+json;version=2.1"
STIX = MEDIA_TYPE
MAX_CONTENT_LENGTH = 1048576
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The most values a match[] filter takes, and the longest `next` token: bounds on
# what one request makes the hub parse and look up.
MAX_MATCH_VALUES = 100
MAX_TOKEN = 8192
_MAC_BYTES = 16

_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")
_OBJECT_ID = re.compile(
    r"^(indicator|identity)--([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_VERSION_WORDS = ("last", "first", "all")


class QueryError(ValueError):
    """A query parameter the hub cannot read (answered 422)."""


class TokenError(ValueError):
    """A `next` token this hub did not make for this collection (answered 422)."""


def acceptable(accept: str | None) -> bool:
    """Whether an Accept header admits the TAXII 2.1 media type (RFC 9110 12.5.1):
    absent, `*/*`, `application/*`, `application/taxii+json` or the exact type with
    `version=2.1`, each with a q above zero."""
    if accept is None or not accept.strip():
        return True
    for item in accept.split(","):
        kind, *params = (p.strip() for p in item.split(";"))
        values = {}
        for param in params:
            name, _, value = param.partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
        if values.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        kind = kind.lower()
        if kind in ("*/*", "application/*"):
            return True
        if kind == "application/taxii+json" and values.get("version", "2.1") == "2.1":
            return True
    return False


def parse_timestamp(text: str) -> datetime:
    """A STIX/TAXII timestamp (RFC 3339, UTC, `Z`); precision past microseconds is cut."""
    found = _TIMESTAMP.match(text)
    if found is None:
        raise QueryError(f"{text[:40]!r} is not a timestamp like 2026-12-02T10:00:00.000Z.")
    year, month, day, hour, minute, second, fraction = found.groups()
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise QueryError(f"{text[:40]!r} is not a valid date and time.") from exc


def object_id(text: str) -> tuple[str, UUID] | None:
    """(`indicator` or `identity`, the UUID) of an object id this hub could have made."""
    found = _OBJECT_ID.match(text)
    if found is None:
        return None
    return found.group(1), UUID(found.group(2))


@dataclass(frozen=True, slots=True)
class Query:
    """An objects, manifest or versions query, normalised. `versions` is `last`,
    `first`, `all` or a tuple of `modified` timestamps; an empty tuple filter means
    none was given."""

    added_after: datetime | None = None
    limit: int = DEFAULT_LIMIT
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: str | tuple[datetime, ...] = "last"
    spec_versions: tuple[str, ...] = ()

    def matches_nothing(self) -> bool:
        return bool(self.spec_versions) and "2.1" not in self.spec_versions

    def wants_type(self, kind: str) -> bool:
        return not self.types or kind in self.types

    def wants_id(self, object_id: str) -> bool:
        return not self.ids or object_id in self.ids


def _values(query: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = query.get(name)
    if raw is None:
        return ()
    values = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    if not values:
        raise QueryError(f"{name} is empty.")
    if len(values) > MAX_MATCH_VALUES:
        raise QueryError(f"{name} takes at most {MAX_MATCH_VALUES} values.")
    return values


def parse_query(query: Mapping[str, str], *, versions_default: str = "last") -> Query:
    """The query of a request without `next` (a request with one uses `read_token`)."""
    added_after = query.get("added_after")
    limit_text = query.get("limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 12:
            raise QueryError("limit must be a whole number from 1.")
        limit = min(int(limit_text), MAX_LIMIT)  # a larger one is capped
        if limit < 1:
            raise QueryError("limit must be a whole number from 1.")
    words = _values(query, "match[version]")
    versions: str | tuple[datetime, ...] = versions_default
    if words:
        if any(w in _VERSION_WORDS for w in words):
            if len(words) > 1:
                # TAXII 2.1 3.4.2 allows combinations; the hub serves one keyword, or a
                # list of exact versions, and says so rather than guess a union.
                raise QueryError("match[version] takes one of last, first, all, or timestamps.")
            versions = words[0]
        else:
            versions = tuple(sorted({parse_timestamp(w) for w in words}))
    return Query(
        added_after=parse_timestamp(added_after) if added_after is not None else None,
        limit=limit,
        ids=_values(query, "match[id]"),
        types=_values(query, "match[type]"),
        versions=versions,
        spec_versions=_values(query, "match[spec_version]"),
    )


def _key_material(collection: UUID, endpoint: str) -> bytes:
    return b"taxii-next\x00" + collection.bytes + endpoint.encode()


def make_token(query: Query, after: datetime, collection: UUID, endpoint: str, key: bytes) -> str:
    """`next`: the query and where its page ended, MAC'd for this collection and
    endpoint (objects, manifest, an object, or its versions)."""
    fields = asdict(query)
    fields["added_after"] = timestamp(query.added_after) if query.added_after else None
    if isinstance(query.versions, tuple):
        fields["versions"] = [timestamp(v) for v in query.versions]
    fields["after"] = timestamp(after)
    body = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(key, _key_material(collection, endpoint) + body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:_MAC_BYTES] + body).rstrip(b"=").decode("ascii")


def read_token(text: str, collection: UUID, endpoint: str, key: bytes) -> tuple[Query, datetime]:
    """(the query, the `date_added` its last page ended at) of a `next` token."""
    refused = TokenError("next is not a token this hub gave for this collection.")
    if not text or len(text) > MAX_TOKEN or not text.isascii():
        raise refused
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise refused from exc
    mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    expected = hmac.new(key, _key_material(collection, endpoint) + body, hashlib.sha256).digest()
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, expected[:_MAC_BYTES]):
        raise refused
    fields = json.loads(body)
    versions = fields["versions"]
    query = Query(
        added_after=parse_timestamp(fields["added_after"]) if fields["added_after"] else None,
        limit=int(fields["limit"]),
        ids=tuple(fields["ids"]),
        types=tuple(fields["types"]),
        versions=versions if isinstance(versions, str) else tuple(map(parse_timestamp, versions)),
        spec_versions=tuple(fields["spec_versions"]),
    )
    return query, parse_timestamp(fields["after"])


def with_limit(query: Query, limit: int) -> Query:
    return replace(query, limit=limit)


def page_json(objects: list[str], more: bool, next_token: str | None, member: str) -> bytes:
    """A TAXII envelope (or manifest, or versions list) from already-rendered JSON
    texts of its items: `{"more": ..., "next": ..., "<member>": [...]}`."""
    head: dict[str, object] = {"more": more}
    if next_token is not None:
        head["next"] = next_token
    text = json.dumps(head, separators=(",", ":"))[:-1]
    return f'{text},"{member}":[{",".join(objects)}]}}'.encode()


def error_json(status: int, title: str, description: str | None = None) -> bytes:
    """A TAXII error message (TAXII 2.1 section 3.6.1)."""
    body: dict[str, object] = {"title": title, "http_status": str(status)}
    if description:
        body["description"] = description
    return json.dumps(body).encode()
