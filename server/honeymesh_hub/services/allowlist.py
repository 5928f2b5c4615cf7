"""The allowlist (PROTOCOL.md section 4): ranges that must never be blocked. It wins
over everything: an add retracts what it covers and rejects what waits, and no
reviewer may approve a covered candidate (services/review/rules.py)."""

from __future__ import annotations

import ipaddress
import logging
import uuid
from datetime import datetime
from typing import Any

from .. import views
from ..errors import Conflict, NotFound, ValidationFailed
from ..store import allowlist as allowlist_store
from ..store import audit
from . import decisions

log = logging.getLogger("honeymesh.allowlist")


def _invalid(pointer: str, detail: str) -> ValidationFailed:
    return ValidationFailed(detail, errors=[{"pointer": pointer, "detail": detail}])


async def list_allowlist(pool: Any) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await allowlist_store.all_entries(conn)
    return {"entries": [views.allowlist_entry(r) for r in rows]}


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise _invalid("/cidr", f"not an address or CIDR without host bits ({exc})") from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
        raise _invalid("/cidr", "write an IPv4-mapped range as IPv4")
    return net


async def add_allowlist(
    pool: Any, now: datetime, actor: str, body: dict[str, Any]
) -> dict[str, Any]:
    cidr = parse_cidr(body["cidr"])
    row = await allowlist(pool, cidr, body["reason"], now, actor)
    if row is None:
        raise Conflict(f"{cidr} is already on the allowlist.")
    return views.allowlist_entry(row)


async def allowlist(
    pool: Any, cidr: allowlist_store.Network, reason: str, now: datetime, actor: str
) -> Any:
    """List `cidr` (audited), retract what it covers and reject what waits; the new
    entry, or None when that exact range is listed already.

    Two passes close the race with publishes and reviews. The first locks every
    overlapping candidate whatever its state, so a reviewer's approve or a publish
    reopening an expired one waits for it and then sees the entry. A publish whose
    snapshot predates the entry can still open or reopen one unseen (its own read of
    the allowlist is stale), so the second pass runs once every transaction older than
    the entry's has ended, and moves whatever they left.
    """
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await allowlist_store.insert(
                conn, entry_id=uuid.uuid4(), cidr=cidr, reason=reason, now=now
            )
            if row is None:
                return None
            await audit.append(
                conn,
                now=now,
                actor=actor,
                action="allowlist.add",
                target=f"allowlist:{row['id']}",
                reason=reason,
                details={"cidr": str(cidr)},
            )
            await decisions.apply_allowlist(conn, cidr, now, actor)
            xid = await allowlist_store.current_xid(conn)
        if not await allowlist_store.wait_for_older_transactions(conn, xid):
            log.warning("allowlist add: older transactions still running; second pass anyway")
        async with conn.transaction():
            await decisions.apply_allowlist(conn, cidr, now, actor)
    return row


async def delete_allowlist(pool: Any, now: datetime, actor: str, entry_id: uuid.UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await allowlist_store.delete(conn, entry_id)
        if row is None:
            raise NotFound("No such allowlist entry.")
        await audit.append(
            conn,
            now=now,
            actor=actor,
            action="allowlist.delete",
            target=f"allowlist:{entry_id}",
            details={"cidr": str(row["cidr"])},
        )
