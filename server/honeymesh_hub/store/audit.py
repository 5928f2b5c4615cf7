"""The append-only audit log (PROTOCOL.md section 4); a trigger forbids edits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any


async def append(
    conn: Any,
    *,
    now: datetime,
    actor: str,
    action: str,
    target: str | None,
    reason: str | None = None,
    details: Mapping[str, object] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (time, actor, action, target, reason, details)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        now,
        actor,
        action,
        target,
        reason,
        dict(details) if details is not None else None,
    )


async def page(conn: Any, after: int, limit: int) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        "SELECT seq, actor, action, target, time, reason, details FROM audit_log"
        " WHERE seq > $1 ORDER BY seq LIMIT $2",
        after,
        limit,
    )
    return rows
