"""Block lists for firewalls that fetch a URL (PROTOCOL.md 13.2): a reader key's active
decisions rendered by the shared pure module (honeymesh_client.protocol.blocklists,
the node's exports use it too), never the hub's own addresses, with a strong ETag."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from honeymesh_client.protocol import blocklists

from ..callers import ReaderCaller
from ..clock import rfc3339
from ..config import IPNetwork
from ..errors import ValidationFailed
from ..store import blocklists as blocklist_store
from .feed import scopes_of_reader


@dataclass(frozen=True, slots=True)
class Blocklist:
    body: bytes
    etag: str
    # How many decisions the list holds.
    count: int


def _refused(name: str, detail: str) -> ValidationFailed:
    return ValidationFailed(
        f"Query parameter {name}: {detail}.",
        errors=[{"pointer": f"/query/{name}", "detail": detail}],
    )


def check_query(fmt: str | None, family: str | None, listname: str | None) -> None:
    """422 `validation_failed` for an unknown format or family or a bad list name."""
    if fmt not in blocklists.FORMATS:
        raise _refused("format", f"must be one of {', '.join(blocklists.FORMATS)}")
    if family is not None and family not in ("4", "6"):
        raise _refused("family", "must be 4 or 6")
    if listname is not None:
        try:
            blocklists.check_listname(listname)
        except ValueError as exc:
            raise _refused("listname", str(exc)) from None


async def render(
    pool: Any,
    caller: ReaderCaller,
    *,
    fmt: str,
    family: int | None,
    listname: str,
    never: Sequence[IPNetwork],
    now: datetime,
) -> Blocklist:
    async with pool.acquire() as conn:
        rows = await blocklist_store.active(conn, scopes_of_reader(caller), now)
    decisions = [
        blocklists.Decision(
            type=r["indicator_type"],
            value=r["indicator_value"],
            scenarios=tuple(sorted(r["scenarios"])),
            expires_at=rfc3339(r["expires_at"]) or "",
            id=str(r["id"]),
        )
        for r in rows
    ]
    kept = blocklists.listed(decisions, family=family, never=never, now=now)
    body = blocklists.render(fmt, kept, family=family, listname=listname, never=never, now=now)
    return Blocklist(body, blocklists.etag(body), len(kept))
