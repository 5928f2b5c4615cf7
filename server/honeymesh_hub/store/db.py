"""Connection pool and forward-only migrations.

Migrations are the `NNNN_name.sql` files shipped in `honeymesh_hub/migrations`; each
runs in its own transaction and is recorded in `schema_migrations`. Every replica may
call `migrate` at start: a session advisory lock makes them take turns, and the
second finds nothing left to do.
"""

from __future__ import annotations

import json
import secrets
from importlib import resources
from typing import Any

import asyncpg

# An arbitrary constant naming the migration lock (pg_advisory_lock takes a bigint).
_MIGRATION_LOCK = 0x486F6E65794D65


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("honeymesh_hub") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text("utf-8")) for name in names]


async def migrate(dsn: str) -> list[str]:
    """Bring the schema up to date; return the versions applied by this call."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version
                    )
                applied.append(version)
            # The cursor MAC key is the hub's own secret, shared by every replica
            # through the database (PROTOCOL.md section 11), made once.
            await conn.execute(
                "INSERT INTO hub_secrets (name, value) VALUES ('cursor_mac', $1)"
                " ON CONFLICT (name) DO NOTHING",
                secrets.token_bytes(32),
            )
            # The transparency log's Ed25519 key (its 32-byte seed), made once, unless
            # HONEYMESH_LOG_KEY_FILE gives one (PROTOCOL.md 15 r2).
            await conn.execute(
                "INSERT INTO hub_secrets (name, value) VALUES ('log_key', $1)"
                " ON CONFLICT (name) DO NOTHING",
                secrets.token_bytes(32),
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 16) -> Any:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        # No session state lives on pooled connections (LISTEN has its own connection,
        # advisory locks are transaction-scoped), so the per-release reset query is a
        # round trip that buys nothing on the publish path.
        reset=_no_reset,
        max_inactive_connection_lifetime=300,
    )


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def ping(conn: Any) -> None:
    """One round trip (the listener's heartbeat, notify.py)."""
    await conn.fetchval("SELECT 1")
