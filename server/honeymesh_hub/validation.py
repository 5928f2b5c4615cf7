"""A signal's payload -> Signal, or a Refusal with a JSON pointer (PROTOCOL.md 6). Pure.

Order: I-JSON, then the JSON Schema (`schemas/signal.schema.json`, compiled once),
then what a schema cannot say: the caller's node id, time bounds, mesh privacy
(no labels or notes), the address's strict canonical form and host bits; only then
`too_broad` and `reserved_range`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import fastjsonschema

from honeymesh_client.protocol import ijson
from honeymesh_client.protocol.errors import ProtocolError

from .addresses import Indicator, parse_indicator, reserved_overlap, too_broad
from .shapes import pointer_of, validator

MAX_FUTURE = timedelta(seconds=300)
MAX_AGE = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Signal:
    id: uuid.UUID
    node_id: uuid.UUID
    observed_at: datetime
    indicator: Indicator
    scenario: str
    action: str
    mode: str
    confidence: int
    ttl_seconds: int
    share: str
    service_name: str | None
    service_port: int | None
    labels: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # validation_failed | too_broad | reserved_range
    detail: str
    pointer: str  # relative to the payload


def _time(value: str) -> datetime | None:
    """RFC 3339 with Z or an offset; None when it is not one."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None and "T" in value.upper() else None


def validate_signal(
    payload: bytes, *, caller_node_id: uuid.UUID, now: datetime
) -> Signal | Refusal:
    try:
        data: Any = ijson.loads(payload)
    except ProtocolError as exc:
        return Refusal("validation_failed", f"the payload is not I-JSON: {exc.detail}", "")
    try:
        validator("signal")(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        pointer = pointer_of(exc)
        return Refusal("validation_failed", f"{pointer or 'the payload'}: {exc.message}", pointer)
    if uuid.UUID(data["node_id"]) != caller_node_id:
        return Refusal("validation_failed", "node_id is not the publishing node", "/node_id")
    observed = _time(data["observed_at"])
    if observed is None:
        return Refusal("validation_failed", "not an RFC 3339 time", "/observed_at")
    if observed > now + MAX_FUTURE:
        return Refusal("validation_failed", "more than 300 s in the future", "/observed_at")
    if observed < now - MAX_AGE:
        return Refusal("validation_failed", "older than 7 days", "/observed_at")
    evidence = data.get("evidence") or {}
    times = {}
    for name in ("first_seen", "last_seen"):
        if name in evidence:
            times[name] = _time(evidence[name])
            if times[name] is None:
                return Refusal("validation_failed", "not an RFC 3339 time", f"/evidence/{name}")
    if len(times) == 2 and times["first_seen"] > times["last_seen"]:  # type: ignore[operator]
        return Refusal("validation_failed", "first_seen is after last_seen", "/evidence/first_seen")
    if data["share"] == "mesh":
        # The hub cannot redact signed bytes: a mesh payload carries no internals.
        if "labels" in data:
            return Refusal("validation_failed", "a mesh signal carries no labels", "/labels")
        if "notes" in evidence:
            return Refusal("validation_failed", "a mesh signal carries no notes", "/evidence/notes")
    ind = data["indicator"]
    try:
        indicator = parse_indicator(ind["type"], ind["value"])
    except ValueError as exc:
        return Refusal("validation_failed", str(exc), "/indicator/value")
    if too_broad(indicator.network):
        return Refusal(
            "too_broad",
            "an IPv4 prefix shorter than /16 or IPv6 shorter than /32",
            "/indicator/value",
        )
    reserved = reserved_overlap(indicator.network)
    if reserved is not None:
        return Refusal(
            "reserved_range", f"overlaps the reserved range {reserved}", "/indicator/value"
        )
    service = data.get("service")
    return Signal(
        id=uuid.UUID(data["id"]),
        node_id=caller_node_id,
        observed_at=observed,
        indicator=indicator,
        scenario=data["scenario"],
        action=data["action"],
        mode=data["mode"],
        confidence=data["confidence"],
        ttl_seconds=data["ttl_seconds"],
        share=data["share"],
        service_name=service["name"] if service else None,
        service_port=service["port"] if service else None,
        labels=data.get("labels"),
    )
