"""The reviewer API's JSON views of candidates, signals and decisions. Pure."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ... import views
from ...addresses import is_broad
from ...clock import rfc3339
from .rules import approvals_needed


def _reviewer_name(actor: str) -> str:
    return actor.removeprefix("reviewer:")


def candidate_view(
    row: Any, now: datetime, approvals: Sequence[tuple[str, datetime]]
) -> dict[str, Any]:
    lease_runs = row["lease_expires_at"] is not None and row["lease_expires_at"] > now
    broad = is_broad(row["network"])
    view = views.candidate_head(row)
    view.update(
        state=row["state"],
        scenarios=list(row["scenarios"]),
        reporters=row["reporters"],
        tenants=row["tenants"],
        signal_count=row["signal_count"],
        max_confidence=row["max_confidence"],
        first_seen=rfc3339(row["first_seen"]),
        last_seen=rfc3339(row["last_seen"]),
        expires_at=rfc3339(row["expires_at"]),
        origin=row["origin"],
        claimed_by=row["claimed_by_name"] if lease_runs else None,
        lease_expires_at=rfc3339(row["lease_expires_at"]) if lease_runs else None,
        broad=broad,
        approvals=[{"reviewer": _reviewer_name(a), "time": rfc3339(t)} for a, t in approvals],
        approvals_needed=approvals_needed(row["state"], broad, [a for a, _ in approvals]),
    )
    return view


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signal_view(row: Any) -> dict[str, Any]:
    """A signal as its publisher sent it: the stored payload bytes and signature."""
    return {
        "signal_id": str(row["signal_uuid"]),
        "node_id": str(row["node_id"]),
        "tenant_id": str(row["tenant_id"]),
        "received_at": rfc3339(row["received_at"]),
        "keyid": row["keyid"],
        "public_key": _b64(bytes(row["public_key"])),
        "envelope": views.envelope(bytes(row["payload"]), bytes(row["sig"]), row["keyid"]),
    }


def decision_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "action": row["action"],
        "from_state": row["from_state"],
        "to_state": row["to_state"],
        "origin": row["origin"],
        "actor": row["actor"],
        "reason": row["reason"],
        "time": rfc3339(row["time"]),
    }
