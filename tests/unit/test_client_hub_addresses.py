"""pull and watch never write a rule covering the hub, even when its name does not
resolve (PROTOCOL.md 12): the last resolved addresses are kept in the node's
home, the connection's own peer is protected too, and with neither nothing is
written at all."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from honeymesh_client.cli import node
from honeymesh_client.cli.node import addresses, output
from honeymesh_client.cli.node.commands import feed
from honeymesh_client.cli.node.home import HUB_ADDRESSES_FILE, Home
from honeymesh_client.errors import ClientError
from honeymesh_client.feedstate import FeedState, SyncResult

HUB = "http://hub.example:8700"


def entry(value: str) -> dict[str, Any]:
    kind = "cidr" if "/" in value else "ip"
    return {"id": value, "indicator": {"type": kind, "value": value}, "scope": "mesh"}


STATE = FeedState(active={"a": entry("192.0.2.0/24"), "b": entry("198.51.100.7")})


def resolves_to(*addresses: str) -> addresses.Resolve:
    def resolve(host: str) -> Sequence[str]:
        assert host == "hub.example"
        return list(addresses)

    return resolve


def fails(host: str) -> Sequence[str]:
    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


def test_a_failing_resolver_reports_no_addresses() -> None:
    assert addresses.protected_addresses(HUB, fails) is None
    assert addresses.protected_addresses(HUB, resolves_to()) is None
    assert addresses.protected_addresses("http://192.0.2.1:8700", fails) == [
        ipaddress.ip_address("192.0.2.1")
    ]


def test_the_last_resolved_addresses_protect_the_hub_when_dns_fails(tmp_path: Path) -> None:
    home = Home(tmp_path)
    first = output.render(home, STATE, "plain", HUB, None, resolves_to("192.0.2.10"))
    assert first == "198.51.100.7\n"
    saved = json.loads((tmp_path / HUB_ADDRESSES_FILE).read_text())
    assert saved == {"host": "hub.example", "addresses": ["192.0.2.10"]}
    assert output.render(home, STATE, "plain", HUB, None, fails) == "198.51.100.7\n"


def test_addresses_kept_for_another_hub_are_not_used(tmp_path: Path) -> None:
    home = Home(tmp_path)
    output.render(home, STATE, "plain", "http://other.example:8700", None, lambda h: ["192.0.2.10"])
    with pytest.raises(ClientError, match="no export was written"):
        output.render(home, STATE, "plain", HUB, None, fails)


def test_the_connection_peer_is_protected_when_nothing_else_is_known(tmp_path: Path) -> None:
    home = Home(tmp_path)
    assert output.render(home, STATE, "plain", HUB, "198.51.100.7", fails) == "192.0.2.0/24\n"


def test_nothing_known_refuses_the_export_and_keeps_the_last_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    out = tmp_path / "hm.txt"
    out.write_text("the last good export\n")

    class FakeClient:
        base_url = HUB
        peer_address = None

        async def __aenter__(self) -> FakeClient:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

    async def fake_sync(client: object, state: FeedState, path: Path, **kw: Any) -> SyncResult:
        state.active.update(STATE.active)
        return SyncResult(changed=True, pages=1)

    monkeypatch.setattr(feed, "hub_client", lambda home, **kw: FakeClient())
    monkeypatch.setattr(feed, "sync", fake_sync)
    monkeypatch.setattr(addresses, "getaddrinfo", fails)
    code = node.main(["--home", str(home), "pull", "--format", "plain", "--output", str(out)])
    assert code != 0
    assert out.read_text() == "the last good export\n"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hub.example" in err[0] and "no export was written" in err[0]
