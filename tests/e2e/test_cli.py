"""`honeymesh-hub` command lines: errors are one sentence, tokens go to stdout alone,
and concurrent migrations take turns (PROTOCOL.md section 11)."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
import pytest

import devservices  # scripts/, on sys.path through tests/conftest.py
from honeymesh_hub.store.db import migration_files

from .remote import CLI_TIMEOUT, HUB_BIN, hub_env, run_cli


def assert_one_sentence(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("honeymesh-hub: ")
    assert lines[0].endswith(".")
    assert done.stdout == ""
    return lines[0]


def test_migrate_without_database_url_is_one_sentence() -> None:
    done = run_cli(["migrate"], hub_env(None, None, None))
    line = assert_one_sentence(done)
    assert "HONEYMESH_DATABASE_URL" in line


def test_migrate_with_unreachable_database_is_one_sentence() -> None:
    closed = devservices.free_port()  # nothing listens there
    done = run_cli(
        ["migrate"], hub_env(f"postgresql://honeymesh@127.0.0.1:{closed}/hub", None, None)
    )
    line = assert_one_sentence(done)
    assert "cannot reach the database" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve"], "cannot reach the database"),
        (["admin", "create-token", "--role", "admin", "--name", "x"], "cannot reach the database"),
    ],
    ids=["serve", "create-token"],
)
def test_other_commands_with_unreachable_database_are_one_sentence(
    args: list[str], words: str
) -> None:
    closed = devservices.free_port()
    done = run_cli(args, hub_env(f"postgresql://honeymesh@127.0.0.1:{closed}/hub", None, None))
    line = assert_one_sentence(done)
    assert words in line


def test_admin_token_with_scope_is_refused_in_one_sentence(
    hub_env_vars: dict[str, str],
) -> None:
    done = run_cli(
        ["admin", "create-token", "--role", "admin", "--scope", "mesh", "--name", "x"],
        hub_env_vars,
    )
    line = assert_one_sentence(done)
    assert "scope" in line


def test_reviewer_token_is_printed_alone(hub_env_vars: dict[str, str]) -> None:
    done = run_cli(
        ["admin", "create-token", "--role", "reviewer", "--scope", "mesh", "--name", "r"],
        hub_env_vars,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n")
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    token = lines[0]
    assert token.startswith("hmr_")
    assert token.strip() == token and " " not in token
    assert len(token) >= len("hmr_") + 43  # at least 32 random bytes, base64url
    assert token not in done.stderr


async def _migrate(env: dict[str, str]) -> tuple[int | None, str, str]:
    proc = await asyncio.create_subprocess_exec(
        HUB_BIN,
        "migrate",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(CLI_TIMEOUT):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_three_concurrent_migrations_apply_the_schema_once(empty_database: str) -> None:
    env = hub_env(empty_database, None, None)
    results = await asyncio.gather(*(_migrate(env) for _ in range(3)))
    assert [status for status, _, _ in results] == [0, 0, 0], results

    versions = [version for version, _ in migration_files()]
    applied: list[str] = []
    for _, out, _ in results:
        (line,) = out.splitlines()
        assert line.startswith("migrated: "), out
        rest = line.removeprefix("migrated: ")
        if rest != "already up to date":
            applied.extend(rest.split(", "))
    # Each migration was applied by exactly one of the three processes.
    assert sorted(applied) == versions

    conn = await asyncpg.connect(empty_database)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        secrets = await conn.fetchval("SELECT array_agg(name ORDER BY name) FROM hub_secrets")
    finally:
        await conn.close()
    assert [r["version"] for r in rows] == versions
    assert secrets == ["cursor_mac", "log_key"]
