"""Per-address limits (PROTOCOL.md section 9): enrollment, failed authentication, and
which address counts (X-Forwarded-For only from trusted proxies, IPv6 per /64)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterator

import pytest

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_hub.clock import ManualClock
from honeymesh_hub.config import Config
from tests.conftest import Services
from tests.integration.foundation import (
    AiohttpClient,
    assert_problem,
    enroll_reply,
    send,
    shared_database,
    snapshot,
    start_hub,
)
from tests.support import Hub, Node, Reply


@pytest.fixture(scope="module")
def database_url(services: Services, template_db: str) -> Iterator[str]:
    yield from shared_database(services, template_db)


_RATELIMIT = re.compile(r'^"enroll";r=(\d+);t=(\d+)$')


def _remaining(reply: Reply) -> int:
    assert reply.headers["RateLimit-Policy"] == '"enroll";q=10;w=60'
    match = _RATELIMIT.match(reply.headers["RateLimit"])
    assert match, reply.headers["RateLimit"]
    assert 0 <= int(match.group(2)) <= 60
    return int(match.group(1))


@pytest.fixture
async def proxied_hub(aiohttp_client: AiohttpClient, hub_config: Config, clock: ManualClock) -> Hub:
    """The test client (127.0.0.1) and 10.0.0.0/8 are trusted proxies."""
    proxies = (ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("10.0.0.0/8"))
    config = dataclasses.replace(hub_config, trusted_proxies=proxies)
    return await start_hub(aiohttp_client, config, clock)


async def test_enrollment_limit_per_address(hub: Hub) -> None:
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id, max_uses=20)
    seen = []
    for _ in range(10):
        _, reply = await enroll_reply(hub, token)
        assert reply.status == 201, reply.body
        seen.append(_remaining(reply))
    assert seen == list(range(9, -1, -1))

    before = await snapshot(hub.database_url)
    _, refused = await enroll_reply(hub, token)
    assert_problem(refused, 429, "rate_limited")
    assert _remaining(refused) == 0
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert await snapshot(hub.database_url) == before


async def test_refused_enrollments_carry_the_ratelimit_fields_and_count(hub: Hub) -> None:
    _, forbidden = await enroll_reply(hub, "hme_unknown")
    assert_problem(forbidden, 403, "forbidden")
    assert _remaining(forbidden) == 9
    garbage = await send(
        hub, "POST", "/v1/nodes/enroll", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert_problem(garbage, 400, "invalid_json")
    assert _remaining(garbage) == 8


async def test_forwarded_for_is_ignored_from_untrusted_peers(hub: Hub) -> None:
    token = await hub.enrollment_token(await hub.tenant(), max_uses=20)
    for i in range(10):
        _, reply = await enroll_reply(hub, token, headers={"X-Forwarded-For": f"192.0.2.{i}"})
        assert reply.status == 201, reply.body
    _, reply = await enroll_reply(hub, token, headers={"X-Forwarded-For": "192.0.2.200"})
    assert_problem(reply, 429, "rate_limited")


async def test_forwarded_for_from_trusted_proxies(proxied_hub: Hub) -> None:
    hub = proxied_hub
    token = await hub.enrollment_token(await hub.tenant(), max_uses=30)

    async def enroll_from(forwarded: str) -> int:
        _, reply = await enroll_reply(hub, token, headers={"X-Forwarded-For": forwarded})
        return reply.status

    # 12 distinct clients behind the proxy: none is limited.
    assert [await enroll_from(f"192.0.2.{i}") for i in range(12)] == [201] * 12
    # The right-most address that is not a trusted proxy counts; spoofed entries to its
    # left do not, and trusted hops to its right are skipped.
    spellings = ["198.51.100.7", "203.0.113.9, 198.51.100.7", "198.51.100.7, 10.1.2.3"]
    statuses = [await enroll_from(spellings[i % 3]) for i in range(10)]
    assert statuses == [201] * 10
    assert await enroll_from("198.51.100.7,10.9.9.9, 127.0.0.1") == 429
    assert await enroll_from("198.51.100.8") == 201


async def test_ipv6_clients_count_per_64(proxied_hub: Hub) -> None:
    hub = proxied_hub
    token = await hub.enrollment_token(await hub.tenant(), max_uses=20)
    for i in range(10):
        _, reply = await enroll_reply(hub, token, headers={"X-Forwarded-For": f"2001:db8:1:2::{i}"})
        assert reply.status == 201, reply.body
    _, reply = await enroll_reply(
        hub, token, headers={"X-Forwarded-For": "2001:db8:1:2:ffff:ffff:ffff:ffff"}
    )
    assert_problem(reply, 429, "rate_limited")
    _, reply = await enroll_reply(hub, token, headers={"X-Forwarded-For": "2001:db8:1:3::1"})
    assert reply.status == 201, reply.body


async def test_failed_authentication_limit(hub: Hub) -> None:
    tenant_id = await hub.tenant()
    token = await hub.enrollment_token(tenant_id, max_uses=5)
    node = await hub.enroll(tenant_id)
    stranger = Node(hub, NodeKey.generate())
    bearer = {"Authorization": "Bearer hma_nothing"}

    # 30 failures in a minute: 401s of all kinds, and 403 forbidden on enrollment.
    for i in range(30):
        if i < 5:
            _, reply = await enroll_reply(hub, "hme_guess")
            assert_problem(reply, 403, "forbidden")
        elif i % 2:
            assert_problem(
                await send(hub, "GET", "/v1/admin/audit", headers=bearer), 401, "unauthorized"
            )
        else:
            assert_problem(await stranger.request("GET", "/v1/nodes/self"), 401, "unknown_key")

    # Past 30, failing requests answer 429 ...
    reply = await send(hub, "GET", "/v1/admin/audit", headers=bearer)
    assert_problem(reply, 429, "rate_limited")
    assert int(reply.headers["Retry-After"]) >= 1
    assert_problem(await stranger.request("GET", "/v1/nodes/self"), 429, "rate_limited")
    assert_problem(await send(hub, "GET", "/v1/nodes/self"), 429, "rate_limited")

    # ... but an enrolled node's signed request and a valid bearer token still pass,
    # even when they fail for another reason.
    assert (await node.request("GET", "/v1/nodes/self")).status == 200
    assert (await hub.call("GET", "/v1/admin/audit")).status == 200
    assert_problem(await node.request("GET", f"/v1/keys/{'0' * 64}"), 404, "not_found")
    assert_problem(await hub.call("GET", "/v1/admin/tenants/nope"), 404, "not_found")
    reviewer = await hub.reviewer_token()
    assert_problem(await hub.call("GET", "/v1/admin/audit", token=reviewer), 403, "forbidden")

    # Enrollment is refused outright: its signature proves only a new key.
    before = await snapshot(hub.database_url)
    _, reply = await enroll_reply(hub, token)
    assert_problem(reply, 429, "rate_limited")
    assert await snapshot(hub.database_url) == before


async def test_failed_authentication_counts_per_address(proxied_hub: Hub) -> None:
    hub = proxied_hub
    mallory = {"X-Forwarded-For": "198.51.100.66", "Authorization": "Bearer hma_x"}
    alice = {"X-Forwarded-For": "198.51.100.1", "Authorization": "Bearer hma_y"}
    for _ in range(30):
        assert_problem(
            await send(hub, "GET", "/v1/admin/nodes", headers=mallory), 401, "unauthorized"
        )
    assert_problem(await send(hub, "GET", "/v1/admin/nodes", headers=mallory), 429, "rate_limited")
    assert_problem(await send(hub, "GET", "/v1/admin/nodes", headers=alice), 401, "unauthorized")
    token = await hub.enrollment_token(await hub.tenant())
    _, reply = await enroll_reply(hub, token, headers={"X-Forwarded-For": "198.51.100.66"})
    assert_problem(reply, 429, "rate_limited")
    _, reply = await enroll_reply(hub, token, headers={"X-Forwarded-For": "198.51.100.1"})
    assert reply.status == 201, reply.body
