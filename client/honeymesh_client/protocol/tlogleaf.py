"""A feed event's leaf in the transparency log (PROTOCOL.md 15 r2).

The leaf is the UTF-8 RFC 8785 (JCS) canonical JSON of the event exactly as the feed
serves it, without its `leaf` member, with `"event": "added"|"removed"`; the event
already carries `time`, its commit time. The hub makes leaves with this function and
a node rebuilds them from the events it is served with the same one, so the two can
never disagree about the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import rfc8785

__all__ = ["MESH_LOG", "leaf_bytes", "log_of_scope", "time_text"]

MESH_LOG = "mesh"


def log_of_scope(scope_key: str) -> str:
    """The log of a scope: `mesh`, or `tenant:<tenant_id>` for a tenant's own."""
    return MESH_LOG if scope_key == MESH_LOG else f"tenant:{scope_key}"


def time_text(value: datetime) -> str:
    """An event's `time`: RFC 3339 UTC with microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def leaf_bytes(event: Mapping[str, Any], kind: str) -> bytes:
    """The leaf of a feed event of `kind` (`added` or `removed`), as served."""
    if kind not in ("added", "removed"):
        raise ValueError(f"an event is added or removed, not {kind!r}")
    body = {k: v for k, v in event.items() if k != "leaf"}
    body["event"] = kind
    return rfc8785.dumps(body)
