"""JSON views of stored rows: the shapes PROTOCOL.md gives, in one place."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from honeymesh_client.protocol.dsse import SIGNAL_PAYLOAD_TYPE

from .clock import rfc3339
from .entitlements import FEATURES, effective_limits


def tenant(row: Any) -> dict[str, Any]:
    return {
        "tenant_id": str(row["id"]),
        "name": row["name"],
        "plan": row["plan"],
        "status": row["status"],
        "expires_at": rfc3339(row["expires_at"]),
        "features": sorted(FEATURES[row["plan"]]),
        "limits": effective_limits(row["plan"], row["limits"]),
        "limit_overrides": dict(row["limits"]),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def enrollment_token(row: Any) -> dict[str, Any]:
    return {
        "token_id": str(row["id"]),
        "tenant_id": str(row["tenant_id"]),
        "max_uses": row["max_uses"],
        "uses": row["uses"],
        "uses_left": 0 if row["revoked_at"] else row["max_uses"] - row["uses"],
        "expires_at": rfc3339(row["expires_at"]),
        "revoked_at": rfc3339(row["revoked_at"]),
        "created_at": rfc3339(row["created_at"]),
    }


def reader_key(row: Any) -> dict[str, Any]:
    """A reader key as listed: never the key, never its hash (PROTOCOL.md 4 r2)."""
    return {
        "key_id": str(row["id"]),
        "tenant_id": str(row["tenant_id"]),
        "name": row["name"],
        "created_at": rfc3339(row["created_at"]),
        "expires_at": rfc3339(row["expires_at"]),
        "last_used_at": rfc3339(row["last_used_at"]),
        "revoked_at": rfc3339(row["revoked_at"]),
        "last_seen": rfc3339(row["last_seen_at"]),
        "polls": row["polls"],
        "decisions_served": row["decisions_served"],
    }


def node(row: Any) -> dict[str, Any]:
    return {
        "node_id": str(row["id"]),
        "tenant_id": str(row["tenant_id"]),
        "name": row["name"],
        "labels": dict(row["labels"]),
        "trusted": row["trusted"],
        "status": "revoked" if row["revoked_at"] else "active",
        "keyid": row["keyid"],
        "created_at": rfc3339(row["created_at"]),
        "revoked_at": rfc3339(row["revoked_at"]),
    }


def allowlist_entry(row: Any) -> dict[str, Any]:
    return {
        "entry_id": str(row["id"]),
        "cidr": str(row["cidr"]),
        "reason": row["reason"],
        "created_at": rfc3339(row["created_at"]),
    }


def audit_entry(row: Any) -> dict[str, Any]:
    entry = {
        "seq": row["seq"],
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "time": rfc3339(row["time"]),
        "reason": row["reason"],
    }
    if row["details"] is not None:
        entry["details"] = row["details"]
    return entry


def key(row: Any) -> dict[str, Any]:
    if row["revoked_at"] is not None:
        status = "revoked"
    elif row["rotated_at"] is not None:
        status = "rotated"
    else:
        status = "current"
    return {
        "keyid": row["keyid"],
        "public_key": base64.b64encode(bytes(row["public_key"])).decode("ascii"),
        "node_id": str(row["node_id"]),
        "tenant_id": str(row["tenant_id"]),
        "status": status,
        "created_at": rfc3339(row["created_at"]),
        "rotated_at": rfc3339(row["rotated_at"]),
        "revoked_at": rfc3339(row["revoked_at"]),
    }


def candidate_head(row: Any) -> dict[str, Any]:
    """What names a candidate everywhere: id, canonical indicator, scope (section 7)."""
    head: dict[str, Any] = {
        "id": str(row["candidate_id"]),
        "indicator": {"type": row["indicator_type"], "value": row["indicator_value"]},
        "scope": row["scope"],
    }
    if row["scope_tenant_id"] is not None:
        head["tenant_id"] = str(row["scope_tenant_id"])
    return head


def feed_added(
    row: Any, *, approved_at: datetime | None, expires_at: datetime | None, origin: str | None
) -> dict[str, Any]:
    """A feed `added` entry (PROTOCOL.md section 8) for an approved candidate."""
    entry = candidate_head(row)
    entry.update(
        scenarios=list(row["scenarios"]),
        confidence=row["max_confidence"],
        reporters=row["reporters"],
        approved_at=rfc3339(approved_at),
        expires_at=rfc3339(expires_at),
        origin=origin,
    )
    return entry


def envelope(payload: bytes, sig: bytes, keyid: str) -> dict[str, Any]:
    """A signal's DSSE envelope as published: the exact payload bytes and signature,
    in standard base64 (PROTOCOL.md section 6); anyone can check it against the key."""
    return {
        "payloadType": SIGNAL_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode("ascii")}],
    }
