from __future__ import annotations

from tests.support import Hub


async def test_hub_info_and_ready(hub: Hub) -> None:
    reply = await hub.call("GET", "/v1/hub")
    assert reply.status == 200
    assert reply.body["api"] == "v1"
    ready = await hub.call("GET", "/readyz")
    assert ready.body == {"database": "ok", "redis": "ok"}


async def test_enroll_and_self(hub: Hub) -> None:
    node = await hub.enroll()
    reply = await node.request("GET", "/v1/nodes/self")
    assert reply.status == 200, reply.body
    assert reply.body["node_id"] == node.node_id
    assert reply.body["plan"] == "pro"
    assert reply.body["keyid"] == node.key.keyid
