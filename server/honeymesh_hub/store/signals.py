"""Signals and candidates: the publish path's SQL, set-based and constant.

A batch costs a bounded number of statements whatever its size: one to find which
signals would open new candidates, one to store signals and fold them into their
candidates, at most one to read corroboration, one to apply the moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class SignalRow:
    """One verified, validated signal ready to store."""

    signal_uuid: UUID
    keyid: str
    indicator_type: str
    indicator_value: str
    network: IPv4Network | IPv6Network
    scope: str
    scope_tenant_id: UUID | None
    scope_key: str
    payload: bytes
    sig: bytes
    scenario: str
    confidence: int
    ttl_seconds: int
    observed_at: datetime


async def existing_keys(conn: Any, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT indicator_value, scope_key FROM candidates"
        " WHERE (indicator_value, scope_key) IN"
        " (SELECT * FROM unnest($1::text[], $2::text[]))",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["indicator_value"], r["scope_key"]) for r in rows}


async def stored_ids(conn: Any, node_id: UUID, signal_uuids: Sequence[UUID]) -> set[UUID]:
    rows = await conn.fetch(
        "SELECT signal_uuid FROM signals WHERE node_id = $1 AND signal_uuid = any($2::uuid[])",
        node_id,
        list(signal_uuids),
    )
    return {r["signal_uuid"] for r in rows}


# What policy.py needs to know of a candidate, as every read of it returns it.
CANDIDATE_FACTS = """c.id AS candidate_id, c.indicator_type, c.indicator_value, c.scope,
       c.scope_tenant_id, c.scope_key, c.network, c.state, c.origin, c.scenarios, c.reporters,
       c.tenants, c.signal_count, c.max_confidence, c.max_ttl_seconds, c.first_seen,
       c.last_seen, c.expires_at, c.expiry_cap, c.approved_at, c.decided_at, c.reviewer_locked,
       EXISTS (SELECT 1 FROM allowlist al WHERE al.cidr && c.network) AS allowlisted"""

# Store the signals (a retry of a stored (node, id) inserts nothing), record each
# (candidate, node) and (candidate, tenant) as reporters, and fold them into their
# candidates. Node, tenant and time come per row, so one statement (one constant text,
# prepared once) stores a batch of one node or a group of single publishes from many.
# The upserts take their row locks in sorted order (no deadlocks between statements);
# counts are increments of what this statement newly inserted, applied to the latest
# row version, so concurrent publishes count exactly.
_STORE_SQL = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                         $5::cidr[], $6::text[], $7::uuid[], $8::text[], $9::bytea[],
                         $10::bytea[], $11::text[], $12::int[], $13::int[], $14::timestamptz[],
                         $15::uuid[], $16::uuid[], $17::timestamptz[])
        AS t(signal_uuid, keyid, ind_type, ind_value, network, scope, scope_tenant_id,
             scope_key, payload, sig, scenario, confidence, ttl, observed_at, node_id,
             tenant_id, received_at)
),
ins AS (
    INSERT INTO signals (id, node_id, signal_uuid, tenant_id, keyid, indicator_value, scope_key,
                         payload, sig, scenario, confidence, ttl_seconds, observed_at,
                         received_at)
    SELECT gen_random_uuid(), node_id, signal_uuid, tenant_id, keyid, ind_value, scope_key,
           payload, sig, scenario, confidence, ttl, observed_at, received_at
    FROM input
    ON CONFLICT (node_id, signal_uuid) DO NOTHING
    RETURNING id, node_id, tenant_id, signal_uuid, indicator_value, scope_key, scenario,
              confidence, ttl_seconds, received_at
),
agg AS (
    SELECT indicator_value, scope_key, count(*) AS n,
           array_agg(DISTINCT scenario ORDER BY scenario) AS scenarios,
           max(confidence) AS max_conf, max(ttl_seconds) AS max_ttl,
           min(received_at) AS first_at, max(received_at) AS last_at
    FROM ins GROUP BY indicator_value, scope_key
),
by_node AS (
    SELECT indicator_value, scope_key, node_id, tenant_id,
           max(received_at) FILTER (WHERE confidence >= $18) AS qualified_at
    FROM ins GROUP BY indicator_value, scope_key, node_id, tenant_id
),
rep AS (
    INSERT INTO candidate_reporters AS r (indicator_value, scope_key, node_id, tenant_id,
                                          qualified_at)
    SELECT indicator_value, scope_key, node_id, tenant_id, qualified_at
    FROM by_node ORDER BY indicator_value, scope_key, node_id
    ON CONFLICT (indicator_value, scope_key, node_id) DO UPDATE
        SET qualified_at = coalesce(EXCLUDED.qualified_at, r.qualified_at)
    RETURNING indicator_value, scope_key, (xmax = 0) AS is_new
),
ten AS (
    INSERT INTO candidate_tenants (indicator_value, scope_key, tenant_id)
    SELECT DISTINCT indicator_value, scope_key, tenant_id FROM by_node
    ORDER BY indicator_value, scope_key, tenant_id
    ON CONFLICT DO NOTHING
    RETURNING indicator_value, scope_key
),
meta AS (
    SELECT DISTINCT ON (ind_value, scope_key) ind_value, scope_key, ind_type, network, scope,
           scope_tenant_id
    FROM input ORDER BY ind_value, scope_key
),
cand AS (
    INSERT INTO candidates AS c (id, indicator_type, indicator_value, network, scope,
        scope_tenant_id, scope_key, scenarios, reporters, tenants, signal_count,
        max_confidence, max_ttl_seconds, first_seen, last_seen, created_at, updated_at)
    SELECT gen_random_uuid(), m.ind_type, a.indicator_value, m.network, m.scope,
           m.scope_tenant_id, a.scope_key, a.scenarios,
           (SELECT count(*) FROM rep WHERE rep.indicator_value = a.indicator_value
                AND rep.scope_key = a.scope_key AND rep.is_new),
           (SELECT count(*) FROM ten WHERE ten.indicator_value = a.indicator_value
                AND ten.scope_key = a.scope_key),
           a.n, a.max_conf, a.max_ttl, a.first_at, a.last_at, a.first_at, a.last_at
    FROM agg a JOIN meta m ON m.ind_value = a.indicator_value AND m.scope_key = a.scope_key
    ORDER BY a.indicator_value, a.scope_key
    ON CONFLICT (indicator_value, scope_key) DO UPDATE SET
        scenarios = ARRAY(SELECT DISTINCT s FROM unnest(c.scenarios || EXCLUDED.scenarios) AS s
                          ORDER BY s),
        reporters = c.reporters + EXCLUDED.reporters,
        tenants = c.tenants + EXCLUDED.tenants,
        signal_count = c.signal_count + EXCLUDED.signal_count,
        max_confidence = greatest(c.max_confidence, EXCLUDED.max_confidence),
        max_ttl_seconds = greatest(c.max_ttl_seconds, EXCLUDED.max_ttl_seconds),
        last_seen = EXCLUDED.last_seen,
        updated_at = EXCLUDED.updated_at
    RETURNING c.*, (c.xmax = 0) AS created
)
SELECT i.signal_uuid, i.node_id, c.created, {facts}
FROM ins i
JOIN cand c ON c.indicator_value = i.indicator_value AND c.scope_key = i.scope_key
"""


_STORE_SQL = _STORE_SQL.replace("{facts}", CANDIDATE_FACTS)

_FACTS_FOR_UPDATE_SQL = f"""
SELECT {CANDIDATE_FACTS}
FROM candidates c
WHERE (c.indicator_value, c.scope_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
ORDER BY c.indicator_value, c.scope_key
FOR UPDATE OF c
"""

_FACTS_SQL = f"""
SELECT {CANDIDATE_FACTS}
FROM candidates c
WHERE (c.indicator_value, c.scope_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


async def candidate_facts(conn: Any, keys: Sequence[tuple[str, str]], *, lock: bool) -> list[Any]:
    """Candidates by (indicator, scope) key; with `lock`, row-locked in key order (the
    order publishing and review lock them in, so they cannot deadlock each other)."""
    rows: list[Any] = await conn.fetch(
        _FACTS_FOR_UPDATE_SQL if lock else _FACTS_SQL,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return rows


@dataclass(frozen=True, slots=True)
class StorePart:
    """One publish's signals, with the node and tenant that sent them and the hub's time."""

    rows: Sequence[SignalRow]
    node_id: UUID
    tenant_id: UUID
    now: datetime


async def store(
    conn: Any,
    rows: Sequence[SignalRow],
    *,
    node_id: UUID,
    tenant_id: UUID,
    now: datetime,
    qualify_confidence: int,
) -> list[Any]:
    """Store signals and fold them into candidates; one row per newly stored signal."""
    return await store_parts(
        conn, [StorePart(rows, node_id, tenant_id, now)], qualify_confidence=qualify_confidence
    )


async def store_parts(
    conn: Any, parts: Sequence[StorePart], *, qualify_confidence: int
) -> list[Any]:
    """Store several publishes' signals in one statement (its own transaction: all or
    nothing); one row per newly stored signal, naming its signal_uuid and node_id. No
    (node, id) may appear twice across parts (the caller decides which one is stored)."""
    flat = [(r, p) for p in parts for r in p.rows]
    flat.sort(key=lambda x: (x[0].indicator_value, x[0].scope_key, x[1].node_id, x[0].signal_uuid))
    ordered = [r for r, _ in flat]
    result: list[Any] = await conn.fetch(
        _STORE_SQL,
        [r.signal_uuid for r in ordered],
        [r.keyid for r in ordered],
        [r.indicator_type for r in ordered],
        [r.indicator_value for r in ordered],
        [r.network for r in ordered],
        [r.scope for r in ordered],
        [r.scope_tenant_id for r in ordered],
        [r.scope_key for r in ordered],
        [r.payload for r in ordered],
        [r.sig for r in ordered],
        [r.scenario for r in ordered],
        [r.confidence for r in ordered],
        [r.ttl_seconds for r in ordered],
        [r.observed_at for r in ordered],
        [p.node_id for _, p in flat],
        [p.tenant_id for _, p in flat],
        [p.now for _, p in flat],
        qualify_confidence,
    )
    return result


async def corroboration(
    conn: Any, keys: Sequence[tuple[str, str]], since: datetime
) -> dict[tuple[str, str], tuple[int, list[UUID]]]:
    """Distinct live reporters with a qualifying signal since `since`, per candidate.

    Read in its own statement, after the candidate's row lock is held, so it sees every
    publish to that candidate that committed before ours (READ COMMITTED takes a new
    snapshot per statement). Revoked nodes' signals do not count.
    """
    rows = await conn.fetch(
        """
        SELECT r.indicator_value, r.scope_key, count(*) AS nodes,
               array_agg(DISTINCT r.tenant_id) AS tenant_ids
        FROM candidate_reporters r
        JOIN nodes n ON n.id = r.node_id AND n.revoked_at IS NULL
        WHERE (r.indicator_value, r.scope_key) IN
              (SELECT * FROM unnest($1::text[], $2::text[]))
          AND r.qualified_at > $3
        GROUP BY r.indicator_value, r.scope_key
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        since,
    )
    return {
        (r["indicator_value"], r["scope_key"]): (r["nodes"], list(r["tenant_ids"])) for r in rows
    }


async def tenant_limits(conn: Any, tenant_ids: Sequence[UUID]) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        "SELECT id AS tenant_id, plan, limits FROM tenants WHERE id = any($1::uuid[])",
        list(tenant_ids),
    )
    return rows


@dataclass(frozen=True, slots=True)
class AppliedMove:
    """One move's decision, audit and feed rows (lifecycle.Move, as the logs keep it)."""

    candidate_id: UUID
    action: str
    from_state: str
    to_state: str
    origin: str | None
    reason: str | None
    actor: str
    rule: str | None
    logged: bool  # a decision row and an audit entry
    feed_kind: str | None  # added | removed | None
    feed_reason: str | None
    scope_key: str
    entry: dict[str, Any] | None
    target: str


# The candidate columns a change may write (lifecycle.fold names them); any other is kept.
CHANGE_COLUMNS = (
    "origin",
    "expires_at",
    "expiry_cap",
    "approved_at",
    "decided_at",
    "reason",
    "reviewer_locked",
)

# Apply moves in one statement: candidate rows, decisions, audit entries and feed
# events together. Each candidate's final state and the columns its moves write come
# folded (lifecycle.fold): the statement writes those values, and keeps the rest.
_APPLY_SQL = """
WITH m AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::bool[], $10::text[],
                         $11::text[], $12::text[], $13::jsonb[], $14::text[], $15::int[])
        AS t(candidate_id, action, from_state, to_state, origin, reason, actor, rule, logged,
             feed_kind, feed_reason, scope_key, entry, target, ord)
),
ch AS (
    SELECT * FROM unnest($16::uuid[], $17::text[], $18::text[], $19::bool[],
                         $20::timestamptz[], $21::bool[], $22::timestamptz[], $23::bool[],
                         $24::timestamptz[], $25::bool[], $26::timestamptz[], $27::bool[],
                         $28::text[], $29::bool[], $30::bool[], $31::bool[])
        AS t(candidate_id, state, origin, set_origin, expires_at, set_expires_at,
             expiry_cap, set_expiry_cap, approved_at, set_approved_at, decided_at,
             set_decided_at, reason, set_reason, reviewer_locked, set_reviewer_locked)
),
upd AS (
    UPDATE candidates c SET
        state = ch.state,
        origin = CASE WHEN ch.set_origin THEN ch.origin ELSE c.origin END,
        expires_at = CASE WHEN ch.set_expires_at THEN ch.expires_at ELSE c.expires_at END,
        expiry_cap = CASE WHEN ch.set_expiry_cap THEN ch.expiry_cap ELSE c.expiry_cap END,
        approved_at = CASE WHEN ch.set_approved_at THEN ch.approved_at ELSE c.approved_at END,
        decided_at = CASE WHEN ch.set_decided_at THEN ch.decided_at ELSE c.decided_at END,
        reason = CASE WHEN ch.set_reason THEN ch.reason ELSE c.reason END,
        reviewer_locked = CASE WHEN ch.set_reviewer_locked THEN ch.reviewer_locked
                               ELSE c.reviewer_locked END,
        updated_at = $32
    FROM ch WHERE c.id = ch.candidate_id
    RETURNING c.id
),
dec AS (
    INSERT INTO decisions (id, candidate_id, action, from_state, to_state, origin, actor,
                           reason, time)
    SELECT gen_random_uuid(), candidate_id, action, from_state, to_state, origin, actor,
           coalesce(reason, rule), $32
    FROM m WHERE logged
    RETURNING 1
),
aud AS (
    INSERT INTO audit_log (time, actor, action, target, reason, details)
    SELECT $32, actor, 'candidate.' || action, target, coalesce(reason, rule),
           jsonb_build_object('rule', rule, 'from', from_state, 'to', to_state,
                              'origin', origin)
    FROM m WHERE logged ORDER BY ord
    RETURNING 1
),
feed AS (
    INSERT INTO feed_log (candidate_id, kind, reason, scope_key, entry, time)
    SELECT candidate_id, feed_kind, feed_reason, scope_key, entry, $32
    FROM m WHERE feed_kind IS NOT NULL ORDER BY ord
    RETURNING 1
),
-- Delivered at commit to every replica's feed listener (notify.py). PostgreSQL refuses
-- a payload of 8000 bytes or more, which would fail the whole transaction: past 7000
-- bytes of scopes (some 190 tenants) the payload is '*', which wakes every waiter.
wake AS (
    SELECT pg_notify('honeymesh_feed',
                     CASE WHEN octet_length(scopes) > 7000 THEN '*' ELSE scopes END)
    FROM (SELECT string_agg(DISTINCT scope_key, ',') AS scopes
          FROM m WHERE feed_kind IS NOT NULL HAVING count(*) > 0) s
)
SELECT (SELECT count(*) FROM upd) AS updated, (SELECT count(*) FROM feed) AS events,
       (SELECT count(*) FROM wake) AS woken
"""


@dataclass(frozen=True, slots=True)
class CandidateChange:
    """A candidate's final state and the columns to write (the rest are kept)."""

    candidate_id: UUID
    state: str
    columns: Mapping[str, Any]


async def apply_moves(
    conn: Any, moves: Sequence[AppliedMove], changes: Sequence[CandidateChange], now: datetime
) -> None:
    if not moves:
        return
    column_args: list[list[Any]] = []
    for name in CHANGE_COLUMNS:
        column_args.append([c.columns.get(name) for c in changes])
        column_args.append([name in c.columns for c in changes])
    await conn.execute(
        _APPLY_SQL,
        [m.candidate_id for m in moves],
        [m.action for m in moves],
        [m.from_state for m in moves],
        [m.to_state for m in moves],
        [m.origin for m in moves],
        [m.reason for m in moves],
        [m.actor for m in moves],
        [m.rule for m in moves],
        [m.logged for m in moves],
        [m.feed_kind for m in moves],
        [m.feed_reason for m in moves],
        [m.scope_key for m in moves],
        [m.entry for m in moves],
        [m.target for m in moves],
        list(range(len(moves))),
        [c.candidate_id for c in changes],
        [c.state for c in changes],
        *column_args,
        now,
    )


def window_start(now: datetime, seconds: int) -> datetime:
    return now - timedelta(seconds=seconds)
