"""CrowdSec Local API, bouncer side (PROTOCOL.md 13.1): pure rendering and filters.

A decision as a bouncer reads it, the Go duration it parses, the stream filters and
the lookup query of `GET /crowdsec/v1/decisions`. No I/O: routes/crowdsec.py and
services/crowdsec.py call these.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import rfc3339

ORIGIN = "honeymesh"
# A CrowdSec scope name by indicator type, and back (case-insensitive on the wire).
SCOPE_OF = {"ip": "Ip", "cidr": "Range"}
TYPE_OF = {"ip": "ip", "range": "cidr"}
DEFAULT_SCOPES = ("ip", "range")


def go_duration(seconds: int) -> str:
    """Go's time.Duration.String() of whole seconds: 0s, 59s, 1m0s, 3h59m58s."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def remaining_seconds(expires_at: datetime, now: datetime) -> int:
    """Whole seconds from `now` until `expires_at` (rounded down: never past it)."""
    return int((expires_at - now).total_seconds() // 1)


def decision(
    *,
    crowdsec_id: int,
    uuid: str,
    indicator_type: str,
    value: str,
    scenarios: Iterable[str],
    expires_at: datetime,
    now: datetime,
    deleted: bool = False,
) -> dict[str, Any]:
    """A decision exactly as 13.1 writes it; in `deleted`, `duration` is "0s"."""
    return {
        "id": crowdsec_id,
        "uuid": uuid,
        "origin": ORIGIN,
        "type": "ban",
        "scope": SCOPE_OF[indicator_type],
        "value": value,
        "duration": "0s" if deleted else go_duration(remaining_seconds(expires_at, now)),
        "until": rfc3339(expires_at),
        "scenario": ",".join(scenarios),
        "simulated": False,
    }


def _words(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    return tuple(w.strip().lower() for w in raw.split(",") if w.strip())


@dataclass(frozen=True, slots=True)
class Filters:
    """The stream's filters, as CrowdSec's: `scopes` comma-separated and
    case-insensitive (default ip,range), `origins` exact, `scenarios_containing` and
    `scenarios_not_containing` case-insensitive substrings, any of the words."""

    types: frozenset[str]
    origin_admitted: bool
    containing: tuple[str, ...]
    not_containing: tuple[str, ...]

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        scopes = _words(query.get("scopes")) or DEFAULT_SCOPES
        origins = {o.strip() for o in (query.get("origins") or "").split(",") if o.strip()}
        return cls(
            types=frozenset(TYPE_OF[s] for s in scopes if s in TYPE_OF),
            origin_admitted=not origins or ORIGIN in origins,
            containing=_words(query.get("scenarios_containing")),
            not_containing=_words(query.get("scenarios_not_containing")),
        )

    @property
    def admits_nothing(self) -> bool:
        return not self.types or not self.origin_admitted

    def admits(self, indicator_type: str, scenarios: Iterable[str]) -> bool:
        if indicator_type not in self.types or not self.origin_admitted:
            return False
        joined = ",".join(scenarios).lower()
        if self.containing and not any(w in joined for w in self.containing):
            return False
        return not any(w in joined for w in self.not_containing)


class BadLookup(ValueError):
    """A lookup query CrowdSec would refuse with 400."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What `GET /crowdsec/v1/decisions` asks: the decisions containing `network`
    (`contains=true`, CrowdSec's default), or within it (`contains=false`); `none` when
    the query can match no decision of ours (another type, scope or origin)."""

    network: str | None
    contains: bool
    none: bool = False


def lookup_of(query: Mapping[str, str]) -> Lookup:
    """`ip=X`, `range=CIDR`, or `scope=ip|range&value=...`; `type` other than ban,
    or another scope or origin, matches nothing. Raises BadLookup for a bad value."""
    # An empty parameter is an absent one, as CrowdSec's (gin's Query gives "").
    query = {k: v for k, v in query.items() if v != ""}
    contains_text = query.get("contains", "true")
    if contains_text not in ("true", "false"):
        raise BadLookup("contains must be true or false")
    contains = contains_text == "true"
    kind_type = (query.get("type") or "ban").lower()
    origins = {o.strip() for o in (query.get("origins") or "").split(",") if o.strip()}
    if kind_type != "ban" or (origins and ORIGIN not in origins):
        return Lookup(None, contains, none=True)
    ip, cidr = query.get("ip"), query.get("range")
    scope, value = (query.get("scope") or "").lower(), query.get("value")
    if value is not None and ip is None and cidr is None:
        if scope in ("", "ip"):
            ip = value
        elif scope == "range":
            cidr = value
        else:
            return Lookup(None, contains, none=True)
    if ip is not None:
        try:
            return Lookup(str(ipaddress.ip_address(ip.strip())), contains)
        except ValueError:
            raise BadLookup(f"unable to parse '{ip}' as an IP address") from None
    if cidr is not None:
        try:
            return Lookup(str(ipaddress.ip_network(cidr.strip(), strict=False)), contains)
        except ValueError:
            raise BadLookup(f"unable to parse '{cidr}' as a range") from None
    return Lookup(None, contains)


def stream_parts(
    new: Iterable[Mapping[str, Any]], deleted: Iterable[Mapping[str, Any]]
) -> Iterable[bytes]:
    """The stream answer as chunks: `{"new": [...], "deleted": [...]}`, one decision a
    chunk, so a caller can write it as it goes."""
    yield b'{"new": ['
    yield from _items(new)
    yield b'], "deleted": ['
    yield from _items(deleted)
    yield b"]}"


def _items(items: Iterable[Mapping[str, Any]]) -> Iterable[bytes]:
    first = True
    for item in items:
        yield (b"" if first else b", ") + json.dumps(item).encode()
        first = False


def json_bytes(item: Mapping[str, Any]) -> bytes:
    return json.dumps(item).encode()


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value admits gzip (RFC 9110 12.5.3): named, or `*`,
    with a q above 0."""
    quality: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        name, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name:
            quality[name] = q
    if "gzip" in quality:
        return quality["gzip"] > 0
    return quality.get("*", 0.0) > 0
