"""pycrowdsec, CrowdSec's own Python bouncer library, as a real client of the hub's
/crowdsec/ routes (PROTOCOL.md 13.1): its startup poll, then its deltas, keep its
cache exactly the hub's active set; its lookup client reads `GET /v1/decisions`."""

from __future__ import annotations

import asyncio
from typing import Any

from pycrowdsec import client as pycrowdsec  # the dev extra installs it: never skipped

from tests.support import Hub, approve, publish, signal, trusted


async def test_pycrowdsec_follows_the_stream(hub: Hub) -> None:
    tenant = await hub.tenant()
    source = await trusted(hub, tenant)
    made = await hub.call("POST", f"/v1/admin/tenants/{tenant}/reader-keys", {"name": "py"})
    key = made.body["key"]
    await approve(source, "198.51.100.1")
    await approve(source, "198.51.100.64/28", kind="cidr")
    lapi = str(hub.client.make_url("/crowdsec/"))
    client: Any = pycrowdsec.StreamClient(api_key=key, lapi_url=lapi)
    await asyncio.to_thread(client.cycle, "true")
    # pycrowdsec lists an address as its /32 network.
    assert client.get_current_decisions() == {"198.51.100.1/32": "ban", "198.51.100.64/28": "ban"}
    assert client.get_action_for("198.51.100.70") == "ban"
    assert client.get_action_for("198.51.100.2") is None

    await approve(source, "203.0.113.9")
    allow = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "198.51.100.1", "reason": "x"})
    assert allow.status == 201
    hub.clock.advance(60)
    await publish(source, signal(source, "203.0.113.9", confidence=95))  # an extension
    await asyncio.to_thread(client.cycle, "false")
    assert client.get_current_decisions() == {"198.51.100.64/28": "ban", "203.0.113.9/32": "ban"}

    query: Any = pycrowdsec.QueryClient(api_key=key, lapi_url=lapi)
    found = await asyncio.to_thread(query.get_decisions_for, "198.51.100.70")
    assert [d["value"] for d in found] == ["198.51.100.64/28"]
    assert await asyncio.to_thread(query.get_action_for, "198.51.100.70") == "ban"
