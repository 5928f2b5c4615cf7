"""The active decisions a block list shows (PROTOCOL.md 13.2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


async def active(conn: Any, scopes: Sequence[str], now: datetime) -> list[Any]:
    """Approved, unexpired candidates in these scopes, with what a list writes."""
    rows: list[Any] = await conn.fetch(
        "SELECT c.id, c.indicator_type, c.indicator_value, c.scenarios, c.expires_at"
        " FROM candidates c"
        " WHERE c.state = 'approved' AND c.scope_key = any($1::text[]) AND c.expires_at > $2"
        " ORDER BY c.indicator_value, c.id",
        list(scopes),
        now,
    )
    return rows
