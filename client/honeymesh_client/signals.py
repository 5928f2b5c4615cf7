"""Signals as a node writes them (PROTOCOL.md section 6): defaults and local checks.

Pure. The hub is the judge; checking here only saves a round trip and lets the
operator see a mistake before it is signed and spooled. Unknown fields are
refused, as the hub would.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .indicators import canonical

__all__ = ["DEFAULTS", "SignalError", "complete_signal", "summary"]

SCENARIO = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$")
DEFAULTS: dict[str, Any] = {
    "action": "blocked",
    "mode": "enforce",
    "confidence": 70,
    "ttl_seconds": 86400,
    "share": "tenant",
}
_FIELDS = frozenset(
    {
        "v",
        "id",
        "node_id",
        "observed_at",
        "indicator",
        "scenario",
        "action",
        "mode",
        "confidence",
        "ttl_seconds",
        "share",
        "service",
        "evidence",
        "labels",
    }
)


class SignalError(ValueError):
    """A signal the hub would refuse; the message is one sentence."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(signal: Mapping[str, Any], name: str, low: int, high: int) -> None:
    value = signal.get(name)
    if type(value) is not int or not low <= value <= high:
        raise SignalError(f"{name} must be a whole number from {low} to {high}")


def complete_signal(fields: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    """Fill defaults (``v``, a new ``id``, ``node_id``, ``observed_at`` now, and
    :data:`DEFAULTS`), canonicalise the indicator, and check what is cheap."""
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise SignalError(f"unknown field {unknown[0]!r}")
    signal: dict[str, Any] = {"v": 1, "id": str(uuid.uuid4()), "node_id": node_id}
    signal["observed_at"] = _now()
    signal.update(DEFAULTS)
    signal.update({k: v for k, v in fields.items() if v is not None})
    if signal["v"] != 1:
        raise SignalError("v must be 1")
    if signal["node_id"] != node_id:
        raise SignalError(f"node_id must be this node's id ({node_id})")
    try:
        signal["id"] = str(uuid.UUID(str(signal["id"])))
    except ValueError:
        raise SignalError("id must be a UUID") from None
    ind = signal.get("indicator")
    if not isinstance(ind, dict) or set(ind) != {"type", "value"}:
        raise SignalError('indicator must be {"type": "ip"|"cidr", "value": ...}')
    try:
        signal["indicator"] = canonical(str(ind["type"]), str(ind["value"])).as_json()
    except ValueError as exc:
        raise SignalError(str(exc)) from None
    scenario = signal.get("scenario")
    if (
        not isinstance(scenario, str)
        or not 1 <= len(scenario) <= 128
        or not SCENARIO.match(scenario)
    ):
        raise SignalError(
            "scenario must be 1 to 128 characters like redis/unauthenticated-config-set"
        )
    if signal["action"] not in ("blocked", "observed"):
        raise SignalError("action must be blocked or observed")
    if signal["mode"] not in ("test", "enforce", "lockdown"):
        raise SignalError("mode must be test, enforce or lockdown")
    if signal["share"] not in ("tenant", "mesh"):
        raise SignalError("share must be tenant or mesh")
    _int(signal, "confidence", 0, 100)
    _int(signal, "ttl_seconds", 300, 2592000)
    evidence = signal.get("evidence")
    notes = isinstance(evidence, dict) and "notes" in evidence
    if signal["share"] == "mesh" and ("labels" in signal or notes):
        raise SignalError(
            "a mesh signal carries no labels or evidence notes (every tenant would read them)"
        )
    labels = signal.get("labels")
    if labels is not None and (
        not isinstance(labels, dict)
        or len(labels) > 16
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        raise SignalError("labels are at most 16 string pairs")
    return signal


def summary(signal: Mapping[str, Any]) -> str:
    ind = signal.get("indicator") or {}
    return f"{ind.get('value')} {signal.get('scenario')} ({signal.get('share')})"
