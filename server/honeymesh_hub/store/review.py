"""The review workflow's SQL (PROTOCOL.md section 7): the queue, one candidate with its
signals and history, leases, the rows a batch of decisions locks, and due expiries.

Every read is filtered by the reviewer's `scope_key` ('mesh' or a tenant id), so a
candidate outside a reviewer's scope is exactly a missing one. State changes are not
written here: they go through `store.signals.apply_moves` with their decision, audit
and feed rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ..lifecycle import FIRST_APPROVAL

# What services/review.py shows and services/decisions.py needs for moves and feed entries.
_COLUMNS = (
    "c.id AS candidate_id, c.indicator_type, c.indicator_value, c.network, c.scope,"
    " c.scope_tenant_id, c.scope_key, c.state, c.origin, c.scenarios, c.reporters, c.tenants,"
    " c.signal_count, c.max_confidence, c.max_ttl_seconds, c.first_seen, c.last_seen,"
    " c.expires_at, c.approved_at, c.claimed_by, c.claimed_by_name, c.lease_expires_at"
)


@dataclass(frozen=True, slots=True)
class QueueQuery:
    """One page of the queue. `after` is the last row's sort key and id."""

    state: str
    scope_key: str
    order: str  # "reporters" | "oldest"
    limit: int
    after: tuple[int | datetime, UUID] | None = None
    scenario: str | None = None
    indicator_prefix: str | None = None
    min_reporters: int | None = None


def queue_sql(q: QueueQuery) -> tuple[str, list[Any]]:
    """A keyset page: an index range scan on (state, scope_key, key, id), no OFFSET.

    order=reporters reads `candidates_queue_reporters` backwards (reporters DESC, id
    DESC); order=oldest reads `candidates_queue_oldest` forwards. The row comparison
    is an index condition, so a deep page costs what the first does. Filters only add
    conditions; every value is a parameter. (bench/review.py EXPLAINs this very text.)
    """
    args: list[Any] = [q.state, q.scope_key]
    where = ["c.state = $1", "c.scope_key = $2"]
    if q.order == "reporters":
        key, direction, compare = "c.reporters", "DESC", "<"
    else:
        key, direction, compare = "c.first_seen", "ASC", ">"
    if q.after is not None:
        args += [q.after[0], q.after[1]]
        where.append(f"({key}, c.id) {compare} (${len(args) - 1}, ${len(args)})")
    if q.scenario is not None:
        args.append(q.scenario)
        where.append(f"${len(args)} = any(c.scenarios)")
    if q.indicator_prefix is not None:
        args.append(q.indicator_prefix)
        where.append(f"starts_with(c.indicator_value, ${len(args)})")
    if q.min_reporters is not None:
        args.append(q.min_reporters)
        where.append(f"c.reporters >= ${len(args)}")
    args.append(q.limit)
    sql = (
        f"SELECT {_COLUMNS} FROM candidates c WHERE {' AND '.join(where)}"
        f" ORDER BY {key} {direction}, c.id {direction} LIMIT ${len(args)}"
    )
    return sql, args


async def queue_page(conn: Any, q: QueueQuery) -> list[Any]:
    sql, args = queue_sql(q)
    rows: list[Any] = await conn.fetch(sql, *args)
    return rows


async def get(conn: Any, candidate_id: UUID, scope_key: str) -> Any:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM candidates c WHERE c.id = $1 AND c.scope_key = $2",
        candidate_id,
        scope_key,
    )


async def lock_for_decisions(conn: Any, ids: Sequence[UUID], scope_key: str) -> list[Any]:
    """The candidates a batch of decisions names, in the reviewer's scope, locked.

    Locks are taken in (indicator_value, scope_key) order, the order a publish's
    candidate upsert takes them in, so a review batch and a publish never deadlock.
    """
    rows: list[Any] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM candidates c"
        " WHERE c.id = any($1::uuid[]) AND c.scope_key = $2"
        " ORDER BY c.indicator_value, c.scope_key FOR UPDATE OF c",
        list(ids),
        scope_key,
    )
    return rows


async def pending_approvals(
    conn: Any, ids: Sequence[UUID]
) -> dict[UUID, list[tuple[str, datetime]]]:
    """First approvals since each candidate's latest state change: (actor, time)."""
    rows = await conn.fetch(
        """
        SELECT d.candidate_id, d.actor, d.time FROM decisions d
        WHERE d.candidate_id = any($1::uuid[]) AND d.action = $2
          AND d.seq > coalesce((SELECT max(x.seq) FROM decisions x
                                WHERE x.candidate_id = d.candidate_id
                                  AND x.from_state <> x.to_state), 0)
        ORDER BY d.candidate_id, d.seq
        """,
        list(ids),
        FIRST_APPROVAL,
    )
    found: dict[UUID, list[tuple[str, datetime]]] = {}
    for r in rows:
        found.setdefault(r["candidate_id"], []).append((r["actor"], r["time"]))
    return found


async def history(conn: Any, candidate_id: UUID) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        "SELECT id, action, from_state, to_state, origin, actor, reason, time"
        " FROM decisions WHERE candidate_id = $1 ORDER BY seq",
        candidate_id,
    )
    return rows


async def signals_of(conn: Any, indicator_value: str, scope_key: str, limit: int) -> list[Any]:
    """The newest signals behind a candidate, with the publisher's key, as stored."""
    rows: list[Any] = await conn.fetch(
        "SELECT s.signal_uuid, s.node_id, s.tenant_id, s.received_at, s.keyid, k.public_key,"
        " s.payload, s.sig"
        " FROM signals s JOIN node_keys k ON k.keyid = s.keyid"
        " WHERE s.indicator_value = $1 AND s.scope_key = $2"
        " ORDER BY s.received_at DESC, s.id DESC LIMIT $3",
        indicator_value,
        scope_key,
        limit,
    )
    return rows


async def claim(
    conn: Any,
    candidate_id: UUID,
    scope_key: str,
    *,
    token_id: UUID,
    name: str,
    now: datetime,
    until: datetime,
) -> Any:
    """Take or renew the lease unless another token's lease runs; None when refused.

    One UPDATE: of two concurrent claims the second waits on the row lock, then
    re-reads the row and finds the first's lease running.
    """
    return await conn.fetchrow(
        f"UPDATE candidates c SET claimed_by = $3, claimed_by_name = $4, lease_expires_at = $6"
        " WHERE c.id = $1 AND c.scope_key = $2"
        "   AND (c.claimed_by IS NULL OR c.claimed_by = $3 OR c.lease_expires_at <= $5)"
        f" RETURNING {_COLUMNS}",
        candidate_id,
        scope_key,
        token_id,
        name,
        now,
        until,
    )


async def release_leases(conn: Any, ids: Sequence[UUID]) -> None:
    """A decision that changed a candidate ends its lease (the next reviewer may act)."""
    await conn.execute(
        "UPDATE candidates SET claimed_by = NULL, claimed_by_name = NULL, lease_expires_at = NULL"
        " WHERE id = any($1::uuid[]) AND claimed_by IS NOT NULL",
        list(ids),
    )


async def due_expiries(conn: Any, now: datetime, limit: int, *, skip_locked: bool) -> list[Any]:
    """Approved candidates whose expires_at has passed, oldest first, locked.

    Reads the partial index `candidates_state_expiry`. With `skip_locked`, a row a
    publish or a reviewer holds is left for the next sweep instead of waited for.
    """
    rows: list[Any] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM candidates c"
        " WHERE c.state = 'approved' AND c.expires_at <= $1"
        " ORDER BY c.expires_at LIMIT $2"
        f" FOR UPDATE OF c{' SKIP LOCKED' if skip_locked else ''}",
        now,
        limit,
    )
    return rows


# An arbitrary constant naming the expiry sweeper's advisory lock (a bigint).
SWEEP_LOCK = 0x486D457870697279


async def sweep_turn(conn: Any, *, wait: bool) -> bool:
    """The sweepers' turn, for this transaction: wait for it, or False when another
    replica is sweeping now."""
    if wait:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SWEEP_LOCK)
        return True
    taken: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK)
    return taken


async def oldest_overdue(conn: Any, now: datetime) -> datetime | None:
    found: datetime | None = await conn.fetchval(
        "SELECT min(expires_at) FROM candidates WHERE state = 'approved' AND expires_at <= $1",
        now,
    )
    return found


async def stats(conn: Any, scope_key: str, since: datetime) -> dict[str, Any]:
    """Queue depth by state, and approvals since `since` by origin, in one scope."""
    row = await conn.fetchrow(
        """
        SELECT
          (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb)
             FROM (SELECT state, count(*) AS n FROM candidates WHERE scope_key = $1
                   GROUP BY state) s) AS states,
          (SELECT count(*) FILTER (WHERE d.origin = 'review') FROM decisions d
             JOIN candidates c ON c.id = d.candidate_id
            WHERE c.scope_key = $1 AND d.action = 'approve' AND d.time >= $2) AS reviewed,
          (SELECT count(*) FILTER (WHERE d.origin = 'auto') FROM decisions d
             JOIN candidates c ON c.id = d.candidate_id
            WHERE c.scope_key = $1 AND d.action = 'approve' AND d.time >= $2) AS auto,
          (SELECT count(*) FILTER (WHERE d.origin = 'trusted') FROM decisions d
             JOIN candidates c ON c.id = d.candidate_id
            WHERE c.scope_key = $1 AND d.action = 'approve' AND d.time >= $2) AS trusted,
          (SELECT count(*) FROM decisions d JOIN candidates c ON c.id = d.candidate_id
            WHERE c.scope_key = $1 AND d.action = 'defer' AND d.time >= $2) AS deferred
        """,
        scope_key,
        since,
    )
    return dict(row)


# At most this many tenants and trusted nodes in the stats' cap lists.
CAP_SUBJECTS = 100


async def cap_subjects(conn: Any, scope_key: str, since: datetime) -> tuple[list[Any], list[Any]]:
    """Whose daily automation caps the stats show, in one scope: (tenants, trusted nodes).

    A tenant reviewer: its own tenant and its trusted nodes. A mesh reviewer: the
    tenants that contributed to a mesh candidate that corroboration approved or deferred
    since `since`, and every trusted node of a tenant that may share with the mesh.
    Each row carries the tenant's plan and limits, for its effective caps.
    """
    tenants = await conn.fetch(
        """
        SELECT t.id AS tenant_id, t.plan, t.limits FROM tenants t
         WHERE ($1 <> 'mesh' AND t.id::text = $1)
            OR ($1 = 'mesh' AND t.id IN (
                 SELECT ct.tenant_id FROM decisions d
                   JOIN candidates c ON c.id = d.candidate_id
                   JOIN candidate_tenants ct
                     ON ct.indicator_value = c.indicator_value AND ct.scope_key = c.scope_key
                  WHERE c.scope_key = 'mesh' AND d.time >= $2
                    AND d.actor = 'rule:corroboration'))
         ORDER BY t.id LIMIT $3
        """,
        scope_key,
        since,
        CAP_SUBJECTS,
    )
    nodes = await conn.fetch(
        """
        SELECT n.id AS node_id, n.tenant_id, t.plan, t.limits FROM nodes n
          JOIN tenants t ON t.id = n.tenant_id
         WHERE n.trusted AND n.revoked_at IS NULL
           AND (($1 <> 'mesh' AND t.id::text = $1)
                OR ($1 = 'mesh' AND t.plan IN ('pro', 'enterprise')))
         ORDER BY n.id LIMIT $2
        """,
        scope_key,
        CAP_SUBJECTS,
    )
    return list(tenants), list(nodes)
