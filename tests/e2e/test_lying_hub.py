"""A lying hub is caught (PROTOCOL.md 12 r2, 15 r2): between `honeymesh-node pull` and a
real hub process, a proxy alters one event of a feed page, drops one, or swaps the
checkpoint for one signed by another key. Each time the node applies nothing, keeps
its files, and exits non-zero with one sentence; the same pull through the honest
path then succeeds."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import devservices
from honeymesh_client.protocol import note

from .conftest import HubFactory
from .remote import Admin
from .test_cli_walk import (
    NODE_BIN,
    assert_one_sentence,
    cli,
    client_env,
    enrolled_node,
    enrollment_token,
    new_tenant,
    publish_args,
)


class Proxy:
    """Forwards everything to the hub; `mode` rewrites delta feed pages with events."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "honest"
        self.lied = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "accept-encoding"}
        async with (
            aiohttp.ClientSession(auto_decompress=True) as http,
            http.request(
                request.method,
                self.upstream + request.rel_url.raw_path_qs,
                data=body or None,
                headers=headers,
            ) as resp,
        ):
            raw = await resp.read()
            out_headers = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
            }
            status = resp.status
        if request.path.endswith("/checkpoint") and status == 200 and self.mode == "swap":
            raw = self.swapped(raw.decode()).encode()
            self.lied += 1
        if request.path == "/v1/feed" and status == 200 and self.mode != "honest":
            page = json.loads(raw)
            if not page["reset"] and page["added"]:
                raw = json.dumps(self.lie(page)).encode()
                self.lied += 1
        return web.Response(status=status, body=raw, headers=out_headers)

    def lie(self, page: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "alter":
            page["added"][0]["confidence"] = 1
        elif self.mode == "drop":
            page["added"].pop(0)
        elif self.mode == "swap":
            for log, text in page["checkpoints"].items():
                page["checkpoints"][log] = self.swapped(text)
        return page

    @staticmethod
    def swapped(text: str) -> str:
        """The same checkpoint, signed by another key under the hub's key name."""
        body, _, _ = text.partition("\n\n")
        name = note.split_note(text)[1][0].name
        return note.sign(body + "\n", name, Ed25519PrivateKey.generate())


@pytest.fixture
async def proxy(hub_process_factory: HubFactory) -> AsyncIterator[tuple[Proxy, str, str]]:
    hub = hub_process_factory()
    lying = Proxy(hub.base_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", lying.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = devservices.free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield lying, hub.base_url, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _approve(admin: Admin, base: str, home: Path, ip: str) -> None:
    done = await cli(NODE_BIN, publish_args(ip, confidence=95), client_env(home))
    assert done.code == 0 and "approved" in done.out, done


async def test_a_lying_hub_is_caught_and_an_honest_one_is_not(
    proxy: tuple[Proxy, str, str], admin: Admin, tmp_path: Path
) -> None:
    lying, base, via = proxy
    tenant = await new_tenant(admin, base, "watched")
    token = await enrollment_token(admin, base, tenant, uses=2)
    source_home, node_home = tmp_path / "source", tmp_path / "node"
    source = await enrolled_node(source_home, base, token, "source")
    reply = await admin.call(base, "PATCH", f"/v1/admin/nodes/{source}", {"trusted": True})
    assert reply.status == 200
    await enrolled_node(node_home, base, token, "node")
    pinned = json.loads((node_home / "feed.json").read_text())["log_key"]
    assert pinned.startswith("honeymesh.")

    await _approve(admin, base, source_home, "198.51.100.10")
    out = tmp_path / "blocklist.txt"
    pull = ["pull", "--format", "plain", "--output", str(out)]
    env = client_env(node_home, HONEYMESH_HUB_URL=via)
    done = await cli(NODE_BIN, pull, env)
    assert done.code == 0, done
    assert out.read_text().split() == ["198.51.100.10"]

    for i, mode in enumerate(("alter", "drop", "swap")):
        await _approve(admin, base, source_home, f"198.51.100.{20 + i}")
        state_before = (node_home / "feed.json").read_bytes()
        file_before = out.read_bytes()
        lying.mode = mode
        lied = lying.lied
        done = await cli(NODE_BIN, pull, env)
        assert lying.lied == lied + 1, mode
        line = assert_one_sentence(done, "honeymesh-node")
        assert "log" in line, (mode, line)
        assert (node_home / "feed.json").read_bytes() == state_before, mode
        assert out.read_bytes() == file_before, mode

    lying.mode = "honest"
    done = await cli(NODE_BIN, pull, env)
    assert done.code == 0, done
    assert sorted(out.read_text().split()) == [
        "198.51.100.10",
        "198.51.100.20",
        "198.51.100.21",
        "198.51.100.22",
    ]
    state = json.loads((node_home / "feed.json").read_text())
    assert state["log_key"] == pinned and state["ranges"]["mesh"]["size"] == 4
    assert base64.b64decode(state["ranges"]["mesh"]["hashes"][0])

    # audit: consistent, held decisions proven, cosigned; then a second node sees it.
    done = await cli(NODE_BIN, ["audit"], env)
    assert done.code == 0, done
    [line] = [x for x in done.lines() if x.startswith("mesh:")]
    assert "no cosigned checkpoint yet" in line and "4 held decision(s) proven" in line
    assert line.endswith("cosigned")
    done = await cli(NODE_BIN, ["pull"], client_env(source_home))
    assert done.code == 0, done
    done = await cli(NODE_BIN, ["audit"], client_env(source_home))
    assert done.code == 0, done
    assert "checkpoint 1 other node(s) cosigned at size 4" in done.out
    # A hub that answers the audit with a checkpoint by another key is caught.
    lying.mode = "swap"
    done = await cli(NODE_BIN, ["audit"], env)
    assert "not signed by the pinned log key" in assert_one_sentence(done, "honeymesh-node")
