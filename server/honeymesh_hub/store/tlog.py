"""The transparency log's SQL (PROTOCOL.md 15 r2; services/tlog.py has the why).

Appends run in the sequencer's transaction; reads are single statements, each a
consistent snapshot: a head and the nodes under it are always written together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from honeymesh_client.protocol.merkle import Node


async def log_key_seed(conn: Any) -> bytes:
    """The log key made at the first migration (store/db.py)."""
    return bytes(await conn.fetchval("SELECT value FROM hub_secrets WHERE name = 'log_key'"))


async def sizes(conn: Any, logs: Iterable[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT log, size FROM tlog_heads WHERE log = any($1::text[])", list(logs)
    )
    return {r["log"]: int(r["size"]) for r in rows}


async def heads(conn: Any, logs: Iterable[str]) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        "SELECT log, size, root, checkpoint FROM tlog_heads WHERE log = any($1::text[])"
        " ORDER BY log",
        list(logs),
    )
    return rows


async def nodes(conn: Any, wanted: Sequence[tuple[str, Node]]) -> dict[tuple[str, Node], bytes]:
    """The stored nodes named (log, (level, index)); absent ones are left out."""
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT n.log, n.level, n.index, n.hash FROM tlog_nodes n"
        " JOIN unnest($1::text[], $2::smallint[], $3::bigint[]) AS w(log, level, index)"
        " USING (log, level, index)",
        [w[0] for w in wanted],
        [w[1][0] for w in wanted],
        [w[1][1] for w in wanted],
    )
    return {(r["log"], (r["level"], r["index"])): bytes(r["hash"]) for r in rows}


async def write(
    conn: Any,
    made: Sequence[tuple[str, int, int, bytes]],
    new_heads: Sequence[tuple[str, int, bytes, str]],
    now: datetime,
) -> None:
    """Insert new complete subtrees (log, level, index, hash) and move the heads (log,
    size, root, checkpoint)."""
    await conn.execute(
        "INSERT INTO tlog_nodes (log, level, index, hash)"
        " SELECT * FROM unnest($1::text[], $2::smallint[], $3::bigint[], $4::bytea[])",
        *(list(c) for c in zip(*made, strict=True)),
    )
    await conn.execute(
        "INSERT INTO tlog_heads (log, size, root, checkpoint, updated_at)"
        " SELECT l, s, r, c, $5 FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::text[])"
        "   AS h(l, s, r, c)"
        " ON CONFLICT (log) DO UPDATE SET size = excluded.size, root = excluded.root,"
        " checkpoint = excluded.checkpoint, updated_at = excluded.updated_at",
        *(list(c) for c in zip(*new_heads, strict=True)),
        now,
    )


async def unlogged(conn: Any, limit: int) -> list[Any]:
    """Sequenced rows not yet in their log (from before the log existed), in order."""
    rows: list[Any] = await conn.fetch(
        "SELECT ord, scope_key, kind, entry, reason, time FROM sequenced"
        " WHERE log_index IS NULL ORDER BY ord LIMIT $1",
        limit,
    )
    return rows


async def set_logged(conn: Any, logged: Sequence[tuple[int, int, bytes, str]]) -> None:
    """Record (ord, log index, leaf, served event) of rows logged after they were
    sequenced."""
    await conn.execute(
        "UPDATE sequenced s SET log_index = u.i, leaf = u.leaf, event = u.event"
        " FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::text[])"
        " AS u(ord, i, leaf, event)"
        " WHERE s.ord = u.ord",
        *(list(c) for c in zip(*logged, strict=True)),
    )


async def leaves(conn: Any, scope_key: str, start: int, end: int) -> list[bytes]:
    rows = await conn.fetch(
        "SELECT leaf FROM sequenced WHERE scope_key = $1 AND log_index >= $2 AND log_index < $3"
        " ORDER BY log_index",
        scope_key,
        start,
        end,
    )
    return [bytes(r["leaf"]) for r in rows]


async def add_cosignature(
    conn: Any, log: str, size: int, node_id: Any, line: str, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO tlog_cosignatures (log, size, node_id, line, created_at)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (log, size, node_id) DO UPDATE SET line = excluded.line,"
        " created_at = excluded.created_at",
        log,
        size,
        node_id,
        line,
        now,
    )


async def latest_cosigned(conn: Any, log: str, limit: int) -> tuple[int | None, list[str]]:
    """The largest cosigned size of `log` and its newest `limit` cosignature lines."""
    rows = await conn.fetch(
        "SELECT size, line FROM tlog_cosignatures"
        " WHERE log = $1 AND size = (SELECT max(size) FROM tlog_cosignatures WHERE log = $1)"
        " ORDER BY created_at DESC, node_id LIMIT $2",
        log,
        limit,
    )
    if not rows:
        return None, []
    return int(rows[0]["size"]), [r["line"] for r in rows]
