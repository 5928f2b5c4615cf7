"""check_publisher fails closed on every way a hub could misreport a signal,
and the node never writes a rule covering the hub's own address."""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any

import pytest

from honeymesh_client.cli.node.addresses import protected_addresses as _protected_addresses
from honeymesh_client.indicators import canonical
from honeymesh_client.protocol.dsse import build_envelope
from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.provenance import Expectation, KeyInfo, check_publisher

KEY = NodeKey.generate()
OTHER = NodeKey.generate()
NODE = "11111111-1111-4111-8111-111111111111"
TENANT = "22222222-2222-4222-8222-222222222222"


def payload(**over: Any) -> dict[str, Any]:
    signal = {
        "v": 1,
        "id": "33333333-3333-4333-8333-333333333333",
        "node_id": NODE,
        "observed_at": "2026-11-24T10:00:00Z",
        "indicator": {"type": "ip", "value": "2001:DB8::1"},
        "scenario": "ssh/brute-force",
        "action": "blocked",
        "mode": "enforce",
        "confidence": 90,
        "ttl_seconds": 3600,
        "share": "tenant",
    }
    signal.update(over)
    return signal


def key_info(key: NodeKey = KEY, **over: str) -> KeyInfo:
    fields = {
        "keyid": key.keyid,
        "public_key": key.public_b64,
        "node_id": NODE,
        "tenant_id": TENANT,
    }
    fields.update(over)
    return KeyInfo(**fields)


EXPECT = Expectation(canonical("ip", "2001:db8::1"), "tenant", TENANT)


def check(envelope: object, key: KeyInfo | None = None, **kw: Any) -> tuple[bool, str | None]:
    found = check_publisher(
        envelope,
        keyid=kw.pop("keyid", KEY.keyid),
        node_id=kw.pop("node_id", NODE),
        key=key if key is not None else key_info(),
        expect=kw.pop("expect", EXPECT),
    )
    return found.ok, found.problem


def env(signal: dict[str, Any], key: NodeKey = KEY) -> dict[str, Any]:
    return build_envelope(key, json.dumps(signal).encode())


def test_a_good_signal_holds_with_any_spelling_of_the_indicator() -> None:
    assert check(env(payload())) == (True, None)


def test_a_tampered_payload_fails() -> None:
    good = env(payload())
    forged = dict(
        good, payload=base64.b64encode(json.dumps(payload(confidence=99)).encode()).decode()
    )
    assert check(forged) == (False, "the signature does not verify")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"key": key_info(OTHER)}, "SHA-256 is not its key id"),
        ({"key": key_info(public_key="AAAA")}, "not a valid Ed25519"),
        ({"key": key_info(node_id="44444444-4444-4444-8444-444444444444")}, "claims node"),
        ({"node_id": "55555555-5555-4555-8555-555555555555"}, "claims node"),
        ({"expect": Expectation(canonical("ip", "2001:db8::2"), "tenant", TENANT)}, "is about"),
        ({"expect": Expectation(EXPECT.indicator, "mesh")}, "shared with tenant"),
        ({"expect": Expectation(EXPECT.indicator, "tenant", "other")}, "tenant is not"),
    ],
)
def test_each_mismatch_fails(kwargs: dict[str, Any], words: str) -> None:
    ok, why = check(env(payload()), **kwargs)
    assert not ok and why is not None and words in why


def test_unknown_key_and_malformed_envelopes_fail() -> None:
    found = check_publisher(env(payload()), keyid=KEY.keyid, node_id=NODE, key=None, expect=EXPECT)
    assert not found.ok and found.problem == "the hub does not know this key"
    assert not check({"payloadType": "x"})[0]
    assert not check(env(payload(), OTHER))[0]  # signed by another key than the one named


def test_the_hub_address_is_protected() -> None:
    assert _protected_addresses("http://127.0.0.1:8700") == [ipaddress.ip_address("127.0.0.1")]
    assert _protected_addresses("http://[2001:db8::5]:8700/hub") == [
        ipaddress.ip_address("2001:db8::5")
    ]
    assert ipaddress.ip_address("127.0.0.1") in _protected_addresses("http://localhost:8700")


def test_node_ids_compare_as_uuids_not_strings() -> None:
    node = "abcdef01-2345-4abc-8def-0123456789ab"
    upper = node.upper()
    sig = env(payload(node_id=upper))
    assert check(sig, key_info(node_id=node), node_id=node) == (True, None)
    assert check(env(payload(node_id=node)), key_info(node_id=upper), node_id=node) == (True, None)
    assert check(env(payload(node_id=node)), key_info(node_id=node), node_id=upper) == (True, None)


@pytest.mark.parametrize("claimed", ["not-a-uuid", "", 42, None, ["x"]])
def test_an_unparseable_node_id_is_a_mismatch_not_a_crash(claimed: object) -> None:
    ok, why = check(env(payload(node_id=claimed)))
    assert not ok and why is not None and "claims node" in why


def test_an_unparseable_key_or_hub_node_id_is_a_mismatch() -> None:
    ok, why = check(env(payload()), key_info(node_id="garbage"))
    assert not ok and why is not None and "claims node" in why
    ok, why = check(env(payload()), node_id="garbage")
    assert not ok and why is not None and "claims node" in why
