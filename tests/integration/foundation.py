"""Helpers of the foundation's integration tests: problem checks, row snapshots, raw calls.

Nothing here mocks a server: snapshots read the test's own PostgreSQL database, and
`start_hub` runs the real app with a config a test has changed (trusted proxies,
an unreachable Redis, no Redis at all).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request
from honeymesh_hub.app import create_app
from honeymesh_hub.clock import ManualClock
from honeymesh_hub.config import Config
from tests.conftest import Services, copied_database
from tests.integration.conftest import make_admin_token
from tests.support import Hub, Node, Reply, _reply

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

# Words that would betray a stack trace or a SQL text in an answer (PROTOCOL.md 3).
_LEAKS = ("Traceback", 'File "', "SELECT ", "INSERT ", "UPDATE ", "asyncpg", "psycopg")


def assert_problem(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with the protocol's members, `code` and `status`."""
    assert reply.status == status, (reply.status, reply.raw[:500])
    assert reply.headers["Content-Type"].startswith("application/problem+json"), reply.headers
    body = reply.body
    assert isinstance(body, dict), reply.raw
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"] == f"urn:honeymesh:problem:{code}"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    text = reply.raw.decode("utf-8")
    for leak in _LEAKS:
        assert leak not in text, text
    return body


# Every table of the foundation (migration 0001) and the reader keys (0007) but the
# audit log, which is append-only (a trigger refuses edits), so its count and last seq
# say whether it moved.
SNAPSHOT_TABLES = (
    "tenants",
    "api_tokens",
    "enrollment_tokens",
    "nodes",
    "node_keys",
    "allowlist",
    "reader_keys",
)
_DIGEST = "row(count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')))::text"
_AUDIT = "(SELECT row(count(*), max(seq))::text FROM audit_log) AS audit_log"


async def snapshot(database_url: str) -> dict[str, Any]:
    """Each table's row count and a digest of its rows: what a refused request must not move."""
    # Only the constant names above are spliced in.
    tables = ", ".join(f"(SELECT {_DIGEST} FROM {t} t) AS {t}" for t in SNAPSHOT_TABLES)  # noqa: S608
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(f"SELECT {tables}, {_AUDIT}")
    finally:
        await conn.close()
    return dict(row)


def shared_database(services: Services, template_db: str) -> Iterator[str]:
    """A migrated database for a whole module (override `database_url` with it).

    Creating a database per test costs most of a test's time, so each module of these
    tests shares one: every test still gets its own app, Redis prefix (so its own
    rate-limit counters) and admin token, works on tenants and nodes it makes itself,
    reads the audit log from where it started, and compares snapshots it takes itself.
    """
    yield from copied_database(services, template_db, "hm_shared_")


async def audit_end(hub: Hub) -> int:
    """The audit log's last seq now; pass it to `audit_since` after acting."""
    seq: int = await fetchval(hub.database_url, "SELECT coalesce(max(seq), 0) FROM audit_log")
    return seq


async def audit_since(hub: Hub, after: int) -> list[dict[str, Any]]:
    """The audit entries after `after`, through the admin API."""
    reply = await hub.call("GET", f"/v1/admin/audit?after={after}&limit=500")
    assert reply.status == 200, reply.body
    entries: list[dict[str, Any]] = reply.body["entries"]
    return entries


async def fetchval(database_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def send(
    hub: Hub,
    method: str,
    path: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """A request with exactly these headers: no bearer token, no signature."""
    resp = await hub.client.request(method, path, data=data, headers=dict(headers or {}))
    return await _reply(resp)


async def start_hub(client_factory: AiohttpClient, config: Config, clock: ManualClock) -> Hub:
    """The real app on `config` (a test's variation of `hub_config`), with an admin token."""
    client = await client_factory(create_app(config, clock=clock))
    token = await make_admin_token(config.database_url, clock)
    return Hub(client, token, clock, database_url=config.database_url)


async def enroll_reply(
    hub: Hub,
    token: str,
    *,
    key: NodeKey | None = None,
    name: str = "node",
    headers: Mapping[str, str] | None = None,
) -> tuple[Node, Reply]:
    """One enrollment attempt, whatever its answer; the node is filled in on 201."""
    node = Node(hub, key or NodeKey.generate())
    reply = await node.request(
        "POST",
        "/v1/nodes/enroll",
        {"token": token, "public_key": node.key.public_b64, "name": name},
        headers=dict(headers or {}),
    )
    if reply.status == 201:
        node.node_id = reply.body["node_id"]
        node.tenant_id = reply.body["tenant_id"]
    return node, reply


def rotation_body(node: Node, new_key: NodeKey, signing: NodeKey | None = None) -> dict[str, str]:
    """`{"public_key", "proof"}` of PROTOCOL.md section 5 for rotating to `new_key`."""
    from honeymesh_client.protocol.keys import b64encode

    signer = signing or node.key
    statement = f"honeymesh-key-rotation:v1:{node.node_id}:{signer.keyid}".encode()
    return {"public_key": new_key.public_b64, "proof": b64encode(new_key.sign(statement))}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


async def signed(
    node: Node,
    method: str,
    path: str,
    data: bytes | None,
    *,
    content_type: str | None = "application/json",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """A request signed by `node` (hub clock) with exactly this Content-Type, or none."""
    target, _, query = path.partition("?")
    hdrs = sign_request(node.key, method, target, query, data, created=int(node.hub.now()))
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    hdrs.update(headers or {})
    return await send(node.hub, method, path, data=data, headers=hdrs)


_TENANT_DECISIONS = """
WITH t AS (
    INSERT INTO tenants (id, name, plan, created_at, updated_at)
    SELECT gen_random_uuid(), 'bulk', 'pro', $1, $1 FROM generate_series(1, $2)
    RETURNING id
)
INSERT INTO candidates (id, indicator_type, indicator_value, network, scope, scope_tenant_id,
                        scope_key, state, origin, scenarios, reporters, tenants, signal_count,
                        max_confidence, max_ttl_seconds, first_seen, last_seen, expires_at,
                        approved_at, created_at, updated_at)
SELECT gen_random_uuid(), 'ip', $3::text, $3::text::cidr, 'tenant', t.id, t.id::text,
       'approved', 'trusted',
       ARRAY['redis/unauthenticated-config-set'], 1, 1, 1, 95, 3600, $1, $1, $4, $1, $1, $1
FROM t
RETURNING scope_tenant_id::text
"""


async def tenant_decisions(
    database_url: str, count: int, value: str, now: datetime, expires_at: datetime
) -> list[str]:
    """`count` new tenants, each with an approved tenant-scope decision on `value`."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(_TENANT_DECISIONS, now, count, value, expires_at)
    finally:
        await conn.close()
    return [str(r[0]) for r in rows]


async def until_redis(hub: Any, wanted: str) -> None:
    """Until /readyz reports Redis as `wanted` (ok or degraded)."""
    deadline = time.monotonic() + 10
    while (await hub.call("GET", "/readyz")).body.get("redis") != wanted:
        assert time.monotonic() < deadline, f"redis never became {wanted}"
        await asyncio.sleep(0.05)
