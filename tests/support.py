"""Test helpers: a hub under test with an admin token, tenants, and signing nodes.

They drive the real app through aiohttp's test client; nodes sign with the very
protocol module the node client uses.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request


@dataclass
class Reply:
    status: int
    headers: Any
    body: Any
    raw: bytes

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


async def _reply(resp: Any) -> Reply:
    raw = await resp.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return Reply(resp.status, resp.headers, body, raw)


@dataclass
class Node:
    hub: Hub
    key: NodeKey
    node_id: str = ""
    tenant_id: str = ""
    clock_offset: float = 0.0

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: NodeKey | None = None,
        created: int | None = None,
        nonce: str | None = None,
    ) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        target, _, query = path.partition("?")
        signer = key or self.key
        hdrs = sign_request(
            signer,
            method,
            target,
            query,
            data,
            created=created if created is not None else int(self.hub.now()),
            nonce=nonce,
        )
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        resp = await self.hub.client.request(method, path, data=data, headers=hdrs)
        return await _reply(resp)


@dataclass
class Hub:
    client: TestClient[Any, Any]
    admin_token: str
    clock: Any
    database_url: str = ""
    tenants: list[str] = field(default_factory=list)

    def now(self) -> float:
        return float(self.clock())

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = {"Authorization": f"Bearer {token or self.admin_token}"}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        resp = await self.client.request(method, path, data=data, headers=hdrs)
        return await _reply(resp)

    async def tenant(self, plan: str = "pro", **extra: Any) -> str:
        reply = await self.call("POST", "/v1/admin/tenants", {"name": "t", "plan": plan, **extra})
        assert reply.status == 201, reply.body
        return str(reply.body["tenant_id"])

    async def enrollment_token(self, tenant_id: str, max_uses: int = 1, ttl: int = 3600) -> str:
        reply = await self.call(
            "POST",
            f"/v1/admin/tenants/{tenant_id}/enrollment-tokens",
            {"ttl_seconds": ttl, "max_uses": max_uses},
        )
        assert reply.status == 201, reply.body
        return str(reply.body["token"])

    async def enroll(
        self, tenant_id: str | None = None, *, token: str | None = None, name: str = "node"
    ) -> Node:
        if token is None:
            token = await self.enrollment_token(tenant_id or await self.tenant())
        node = Node(self, NodeKey.generate())
        reply = await node.request(
            "POST",
            "/v1/nodes/enroll",
            {"token": token, "public_key": node.key.public_b64, "name": name},
        )
        assert reply.status == 201, reply.body
        node.node_id = reply.body["node_id"]
        node.tenant_id = reply.body["tenant_id"]
        return node

    async def reviewer_token(self, scope: str = "mesh", name: str = "rev") -> str:
        reply = await self.call(
            "POST", "/v1/admin/tokens", {"role": "reviewer", "scope": scope, "name": name}
        )
        assert reply.status == 201, reply.body
        return str(reply.body["token"])


def wall_clock() -> float:
    return time.time()


def signal(node: Node, value: str = "203.0.113.7", **overrides: Any) -> dict[str, Any]:
    """A valid signal payload from `node`, observed now by the hub's clock."""
    from datetime import UTC, datetime
    from uuid import uuid4

    observed = datetime.fromtimestamp(node.hub.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body: dict[str, Any] = {
        "v": 1,
        "id": str(uuid4()),
        "node_id": node.node_id,
        "observed_at": observed,
        "indicator": {"type": "ip", "value": value},
        "scenario": "redis/unauthenticated-config-set",
        "action": "blocked",
        "mode": "enforce",
        "confidence": 80,
        "ttl_seconds": 3600,
        "share": "mesh",
    }
    body.update(overrides)
    return body


def envelope(node: Node, payload: dict[str, Any] | bytes, key: NodeKey | None = None) -> Any:
    from honeymesh_client.protocol.dsse import build_envelope

    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return build_envelope(key or node.key, raw)


async def publish(node: Node, *payloads: dict[str, Any]) -> Reply:
    return await node.request(
        "POST", "/v1/signals", {"envelopes": [envelope(node, p) for p in payloads]}
    )


async def trusted(hub: Hub, tenant: str | None = None) -> Node:
    """An enrolled node marked trusted: its signals of confidence 95 approve at once."""
    node = await hub.enroll(tenant)
    reply = await hub.call("PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": True})
    assert reply.status == 200
    return node


async def approve(node: Node, value: str, kind: str = "ip", **extra: Any) -> str:
    """A decision approved by a trusted node's own signal; its id."""
    body = signal(node, value, confidence=95, indicator={"type": kind, "value": value}, **extra)
    reply = await publish(node, body)
    [result] = reply.body["results"]
    assert result["candidate_state"] == "approved", reply.body
    return str(result["candidate_id"])


async def sequenced(hub: Hub) -> None:
    """Until every final feed event is sequenced (services/sequencer.py); the app's own
    loop may take rounds meanwhile."""
    from honeymesh_hub import state
    from honeymesh_hub.services import sequencer

    pool = hub.client.app[state.POOL]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, more = await sequencer.run_round(pool, hub.client.app[state.LOG_KEY])
        if not more:
            return
        if not done:
            # The app's own round holds the sequencer's lock (a try-lock: nothing to
            # await); on a loaded machine it may hold it for a while.
            await asyncio.sleep(0.005)
    raise AssertionError("the sequencer never caught up")
