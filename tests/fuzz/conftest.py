"""The real hub on a free port for schemathesis, with a tenant, a node and tokens.

Schemathesis sends real HTTP with `requests` from the test's thread, so the hub
runs in a thread of its own (its own event loop) on a fresh database copied from
the run's template and a Redis key space of its own; it is stopped and the
database dropped after the module.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any

import pytest
import requests
from aiohttp import web

from honeymesh_client.protocol.dsse import build_envelope
from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request
from honeymesh_hub.app import create_app
from honeymesh_hub.config import Config
from tests.conftest import Services, _admin_execute, _quote_ident, dsn_with_database, run_async
from tests.integration.conftest import make_admin_token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _HubThread:
    """create_app served by aiohttp's AppRunner on a private loop in a daemon thread."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)

    async def _start(self) -> None:
        self._runner = web.AppRunner(create_app(self._config), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.listen_host, self._config.listen_port)
        await site.start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


@dataclass
class FuzzHub:
    """The hub under fuzzing and the credentials its routes need."""

    base_url: str
    admin_token: str
    reviewer_token: str = ""
    reader_key: str = ""  # of the fuzzed tenant, for the reader routes
    tenant_id: str = ""
    node_id: str = ""
    node_key: NodeKey = field(default_factory=NodeKey.generate)
    # Real ids by path template and parameter name, which the fuzzer uses for some of
    # its cases so that routes on one resource get past 404. They name spare
    # resources (a second tenant, node, token ...), never the ones the fuzzing signs
    # or authenticates with, since a fuzzed PATCH may suspend or a DELETE revoke them.
    path_ids: dict[str, dict[str, str]] = field(default_factory=dict)
    # Each request comes "through the proxy" from an address of its own (198.18.0.0/15,
    # RFC 2544 benchmarking space), so failing-auth cases never add up to the
    # per-address failed-auth limit of PROTOCOL.md section 9.
    _addresses: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_address(self) -> str:
        n = next(self._addresses) % (1 << 17)
        return f"198.{18 + (n >> 16)}.{(n >> 8) & 0xFF}.{n & 0xFF}"

    def admin(self, method: str, path: str, body: Any) -> Any:
        resp = requests.request(
            method,
            self.base_url + path,
            json=body,
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "X-Forwarded-For": self.next_address(),
            },
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        return resp.json()

    def signed(self, key: NodeKey, method: str, path: str, body: Any) -> requests.Response:
        data = json.dumps(body).encode() if body is not None else None
        target, _, query = path.partition("?")
        headers = sign_request(key, method, target, query, data)
        if data is not None:
            headers["Content-Type"] = "application/json"
        headers["X-Forwarded-For"] = self.next_address()
        return requests.request(
            method, self.base_url + path, data=data, headers=headers, timeout=30
        )

    def reviewer(self, method: str, path: str, body: Any) -> Any:
        resp = requests.request(
            method,
            self.base_url + path,
            json=body,
            headers={
                "Authorization": f"Bearer {self.reviewer_token}",
                "X-Forwarded-For": self.next_address(),
            },
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    def enroll(self, tenant_id: str, key: NodeKey) -> str:
        token = self.admin(
            "POST",
            f"/v1/admin/tenants/{tenant_id}/enrollment-tokens",
            {"ttl_seconds": 3600, "max_uses": 1},
        )["token"]
        body = {"token": token, "public_key": key.public_b64, "name": "fuzz"}
        resp = self.signed(key, "POST", "/v1/nodes/enroll", body)
        assert resp.status_code == 201, resp.text
        node_id: str = resp.json()["node_id"]
        return node_id

    def make_spares(self) -> None:
        """A second tenant, node, tokens, an allowlist entry, a reader key and a candidate,
        for path_ids."""
        tenant = self.admin("POST", "/v1/admin/tenants", {"name": "spare", "plan": "pro"})
        spare_tenant = tenant["tenant_id"]
        enrollment = self.admin(
            "POST", f"/v1/admin/tenants/{spare_tenant}/enrollment-tokens", {"max_uses": 1}
        )
        spare_key = NodeKey.generate()
        spare_node = self.enroll(self.tenant_id, spare_key)
        token = self.admin(
            "POST", "/v1/admin/tokens", {"role": "reviewer", "scope": "mesh", "name": "spare"}
        )
        entry = self.admin(
            "POST", "/v1/admin/allowlist", {"cidr": "192.0.2.0/24", "reason": "fuzz"}
        )
        reader_key = self.admin(
            "POST", f"/v1/admin/tenants/{spare_tenant}/reader-keys", {"name": "spare"}
        )
        own_reader = self.admin(
            "POST", f"/v1/admin/tenants/{self.tenant_id}/reader-keys", {"name": "reader"}
        )
        self.reader_key = own_reader["key"]
        # Two candidates: one left pending (claim, view), one approved (provenance).
        envelopes = [
            build_envelope(self.node_key, json.dumps(_signal(self.node_id, value)).encode())
            for value in ("203.0.113.7", "203.0.113.8")
        ]
        resp = self.signed(self.node_key, "POST", "/v1/signals", {"envelopes": envelopes})
        assert resp.status_code == 202, resp.text
        listed = self.reviewer("GET", "/v1/review/candidates", None)["candidates"]
        by_value = {c["indicator"]["value"]: c["id"] for c in listed}
        candidate, decision = by_value["203.0.113.7"], by_value["203.0.113.8"]
        decided = self.reviewer(
            "POST",
            "/v1/review/decisions",
            {"decisions": [{"candidate_id": decision, "action": "approve", "reason": "fuzz"}]},
        )
        assert decided["results"][0]["state"] == "approved", decided
        tenant_path = "/v1/admin/tenants/{tenant_id}"
        self.path_ids = {
            tenant_path: {"tenant_id": spare_tenant},
            tenant_path + "/enrollment-tokens": {"tenant_id": spare_tenant},
            tenant_path + "/reader-keys": {"tenant_id": spare_tenant},
            "/v1/admin/reader-keys/{key_id}": {"key_id": reader_key["key_id"]},
            "/v1/admin/enrollment-tokens/{token_id}": {"token_id": enrollment["token_id"]},
            "/v1/admin/tokens/{token_id}": {"token_id": token["token_id"]},
            "/v1/admin/nodes/{node_id}": {"node_id": spare_node},
            "/v1/admin/nodes/{node_id}/revoke": {"node_id": spare_node},
            "/v1/admin/allowlist/{entry_id}": {"entry_id": entry["entry_id"]},
            "/v1/keys/{keyid}": {"keyid": spare_key.keyid},
            "/v1/review/candidates/{id}": {"id": candidate},
            "/v1/review/candidates/{id}/claim": {"id": candidate},
            "/v1/decisions/{decision_id}/provenance": {"decision_id": decision},
            "/console/{name}": {"name": "index.html"},
        }


def _signal(node_id: str, value: str) -> dict[str, Any]:
    """A valid signal payload (as tests/support.py signal), observed now."""
    return {
        "v": 1,
        "id": str(uuid.uuid4()),
        "node_id": node_id,
        "observed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "indicator": {"type": "ip", "value": value},
        "scenario": "redis/unauthenticated-config-set",
        "action": "blocked",
        "mode": "enforce",
        "confidence": 80,
        "ttl_seconds": 3600,
        "share": "mesh",
    }


@pytest.fixture(scope="module")
def fuzz_database(services: Services, template_db: str) -> Iterator[str]:
    """A fresh migrated database for the module (the function-scoped one would restart
    the hub for every operation)."""
    name = f"hm_fuzz_{uuid.uuid4().hex[:12]}"
    quoted = _quote_ident(name)
    run_async(
        _admin_execute(
            services.pg_admin_dsn, f"CREATE DATABASE {quoted} TEMPLATE {_quote_ident(template_db)}"
        )
    )
    try:
        yield dsn_with_database(services.pg_admin_dsn, name)
    finally:
        run_async(
            _admin_execute(services.pg_admin_dsn, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        )


@pytest.fixture(scope="module")
def fuzz_hub(services: Services, fuzz_database: str) -> Iterator[FuzzHub]:
    """The hub with a pro tenant (mesh feature), one enrolled node, admin and reviewer."""
    from honeymesh_hub.clock import system_clock

    port = _free_port()
    prefix = f"hmt:{uuid.uuid4().hex[:8]}:"
    config = Config(
        database_url=fuzz_database,
        redis_url=services.redis_url,
        redis_prefix=prefix,
        listen_port=port,
        identity_cache_seconds=0.0,
        identity_cache_listening_seconds=0.0,
        trusted_proxies=(ip_network("127.0.0.1/32"),),
    )
    thread = _HubThread(config)
    thread.start()
    try:
        hub = FuzzHub(
            base_url=f"http://127.0.0.1:{port}",
            admin_token=run_async(make_admin_token(fuzz_database, system_clock)),
        )
        hub.tenant_id = hub.admin("POST", "/v1/admin/tenants", {"name": "fuzz", "plan": "pro"})[
            "tenant_id"
        ]
        hub.node_id = hub.enroll(hub.tenant_id, hub.node_key)
        hub.reviewer_token = hub.admin(
            "POST", "/v1/admin/tokens", {"role": "reviewer", "scope": "mesh", "name": "fuzz"}
        )["token"]
        hub.make_spares()
        yield hub
    finally:
        thread.stop()
        _drop_redis_keys(services.redis_url, prefix)


def _drop_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
