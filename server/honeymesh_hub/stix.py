"""STIX 2.1 objects for the TAXII 2.1 surface (PROTOCOL.md section 14), rendered purely.

The hub renders each object once to compact JSON text and copies those texts into
TAXII pages unparsed (taxii.page_json).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

SPEC_VERSION = "2.1"
MEDIA_TYPE = "application/stix+json;version=2.1"
SOURCE_NAME = "honeymesh"
HUB_NAME = "HoneyMesh Hub"
# The smallest step a timestamp rendered with microseconds can take.
_TICK = timedelta(microseconds=1)


def timestamp(t: datetime) -> str:
    """RFC 3339 UTC with microseconds and 'Z' (STIX timestamps; TAXII date_added)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("naive datetime")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def identity_id(hub_id: UUID) -> str:
    return f"identity--{hub_id}"


def indicator_id(decision_id: UUID) -> str:
    return f"indicator--{decision_id}"


def identity(hub_id: UUID, created: datetime) -> dict[str, Any]:
    """The hub's own identity: the ``created_by_ref`` of every indicator."""
    stamp = timestamp(created)
    return {
        "type": "identity",
        "spec_version": SPEC_VERSION,
        "id": identity_id(hub_id),
        "created": stamp,
        "modified": stamp,
        "name": HUB_NAME,
        "identity_class": "system",
    }


@dataclass(frozen=True, slots=True)
class Version:
    """One feed event of a decision, i.e. one version of its indicator."""

    decision_id: UUID
    kind: Literal["added", "removed"]
    time: datetime  # the event's time -> modified
    created: datetime  # the decision's first approval
    approved_at: datetime  # the approval this version stands for -> valid_from
    expires_at: datetime  # -> valid_until (for "added")
    indicator_type: Literal["ip", "cidr"]
    indicator_value: str
    scenarios: tuple[str, ...]
    confidence: int

    def __post_init__(self) -> None:
        if not 0 <= self.confidence <= 100:
            raise ValueError(f"confidence {self.confidence} out of 0..100")


def pattern(indicator_type: Literal["ip", "cidr"], value: str) -> str:
    """``[ipv4-addr:value = '203.0.113.7']`` etc.; the family decides the object type."""
    if indicator_type == "ip":
        addr = ipaddress.ip_address(value)
        version, text = addr.version, str(addr)
    elif indicator_type == "cidr":
        net = ipaddress.ip_network(value)
        version, text = net.version, str(net)
    else:
        raise ValueError(f"indicator type {indicator_type!r}")
    # ``text`` is ipaddress's canonical form: digits, hex, '.', ':', '/' only, so it
    # needs no quoting inside the STIX string literal.
    return f"[ipv{version}-addr:value = '{text}']"


def indicator_version(v: Version, *, identity_id: str, provenance_url: str) -> dict[str, Any]:
    """The indicator version standing for feed event ``v``."""
    # STIX requires modified >= created; an event is never older than the first
    # approval, but clamp rather than emit an invalid object if clocks disagree.
    modified = max(v.time, v.created)
    valid_from = v.approved_at
    valid_until = v.time if v.kind == "removed" else v.expires_at
    # STIX requires valid_until > valid_from. An expiry or removal at (or, with clock
    # skew, before) the approval gets the smallest valid value: valid_from plus one
    # microsecond, the finest step these timestamps render.
    valid_until = max(valid_until, valid_from + _TICK)
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": SPEC_VERSION,
        "id": indicator_id(v.decision_id),
        "created_by_ref": identity_id,
        "created": timestamp(v.created),
        "modified": timestamp(modified),
        "name": f"HoneyMesh block of {v.indicator_value}",
        "description": (
            f"{'Removed' if v.kind == 'removed' else 'Approved'} HoneyMesh decision"
            f" {v.decision_id}: {', '.join(v.scenarios) or 'no scenario'}."
        ),
        "indicator_types": ["malicious-activity"],
        "pattern": pattern(v.indicator_type, v.indicator_value),
        "pattern_type": "stix",
        "valid_from": timestamp(valid_from),
        "valid_until": timestamp(valid_until),
        "confidence": v.confidence,
        "external_references": [{"source_name": SOURCE_NAME, "url": provenance_url}],
    }
    if v.kind == "removed":
        obj["revoked"] = True
    if v.scenarios:  # STIX forbids empty lists
        obj["labels"] = list(v.scenarios)
    return obj


def to_json(obj: Any) -> str:
    """Compact JSON text, as copied into TAXII pages."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def manifest_record(object_id: str, date_added: datetime, version: datetime) -> dict[str, Any]:
    return {
        "id": object_id,
        "date_added": timestamp(date_added),
        "version": timestamp(version),
        "media_type": MEDIA_TYPE,
    }
