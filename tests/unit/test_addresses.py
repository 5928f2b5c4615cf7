"""Strict parsing and canonical forms of indicators (PROTOCOL.md section 6). Pure."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from honeymesh_hub.addresses import is_broad, parse_indicator, reserved_overlap, too_broad
from honeymesh_hub.validation import Refusal, Signal, validate_signal


@pytest.mark.parametrize(
    ("type_", "value", "canonical"),
    [
        ("ip", "2001:DB8:0:0:0:0:0:1", ("ip", "2001:db8::1")),
        ("ip", "2001:db8::0:1", ("ip", "2001:db8::1")),
        ("ip", "2001:db8:0:1:0:0:0:1", ("ip", "2001:db8:0:1::1")),
        ("ip", "2001:db8:1:1:1:1:0:1", ("ip", "2001:db8:1:1:1:1:0:1")),
        ("ip", "::ffff:192.0.2.1", ("ip", "192.0.2.1")),
        ("ip", "::ffff:c000:201", ("ip", "192.0.2.1")),
        ("cidr", "203.0.113.7/32", ("ip", "203.0.113.7")),
        ("cidr", "2001:db8::1/128", ("ip", "2001:db8::1")),
        ("cidr", "::ffff:192.0.2.0/120", ("cidr", "192.0.2.0/24")),
        ("cidr", "2001:DB8::/32", ("cidr", "2001:db8::/32")),
    ],
)
def test_canonical(type_: str, value: str, canonical: tuple[str, str]) -> None:
    ind = parse_indicator(type_, value)
    assert (ind.type, ind.value) == canonical


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("ip", "192.0.2.01"),
        ("ip", "fe80::1%eth0"),
        ("ip", " 192.0.2.1"),
        ("ip", "192.0.2"),
        ("ip", "12345::1"),
        ("ip", "192.0.2.1/32"),
        ("cidr", "192.0.2.1/24"),
        ("cidr", "192.0.2.0/024"),
        ("cidr", "192.0.2.0"),
        ("cidr", "192.0.2.0/33"),
        ("ip", "١٩٢.0.2.1"),
    ],
)
def test_refused(type_: str, value: str) -> None:
    with pytest.raises(ValueError):
        parse_indicator(type_, value)


@pytest.mark.parametrize(
    ("value", "reserved"),
    [
        ("10.0.0.1/32", True),
        ("100.64.1.0/24", True),
        ("172.15.255.0/24", False),
        ("64:ff9b::a00:1/128", True),
        ("2002:a00:1::/48", True),
        ("2001:0::/32", True),
        ("2001:db8::/32", False),
        ("192.0.2.0/24", False),
        ("203.0.113.0/24", False),
        ("198.51.100.0/24", False),
    ],
)
def test_reserved_by_overlap(value: str, reserved: bool) -> None:
    assert (reserved_overlap(ipaddress.ip_network(value)) is not None) is reserved


def test_breadth() -> None:
    assert too_broad(ipaddress.ip_network("8.0.0.0/15"))
    assert not too_broad(ipaddress.ip_network("8.8.0.0/16"))
    assert is_broad(ipaddress.ip_network("8.8.8.0/23"))
    assert not is_broad(ipaddress.ip_network("8.8.8.0/24"))
    assert is_broad(ipaddress.ip_network("2001:db8::/47"))
    assert not is_broad(ipaddress.ip_network("2001:db8::/48"))


NODE = uuid.uuid4()
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _payload(observed: datetime, **extra: object) -> bytes:
    import json

    body = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "node_id": str(NODE),
        "observed_at": observed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "indicator": {"type": "ip", "value": "203.0.113.5"},
        "scenario": "ssh/brute",
        "action": "observed",
        "mode": "test",
        "confidence": 10,
        "ttl_seconds": 300,
        "share": "tenant",
        **extra,
    }
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (timedelta(seconds=300), True),
        (timedelta(seconds=301), False),
        (-timedelta(days=7), True),
        (-timedelta(days=7, seconds=1), False),
    ],
)
def test_observed_at_bounds(offset: timedelta, ok: bool) -> None:
    result = validate_signal(_payload(NOW + offset), caller_node_id=NODE, now=NOW)
    assert isinstance(result, Signal) is ok


def test_tenant_signal_may_carry_labels_and_notes() -> None:
    payload = _payload(NOW, labels={"rack": "a1"}, evidence={"events": 2, "notes": "x"})
    assert isinstance(validate_signal(payload, caller_node_id=NODE, now=NOW), Signal)


def test_payload_that_is_not_ijson() -> None:
    result = validate_signal(b'{"v": 1, "v": 1}', caller_node_id=NODE, now=NOW)
    assert isinstance(result, Refusal)
    assert (result.code, result.pointer) == ("validation_failed", "")
