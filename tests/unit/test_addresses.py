"""Strict parsing, canonical forms, reserved and broad ranges (PROTOCOL.md sections 4, 6)."""

from __future__ import annotations

import ipaddress
import re
from importlib import resources

import pytest

from honeymesh_hub.addresses import (
    DEFAULT_ALLOWLIST,
    RESERVED,
    Indicator,
    is_broad,
    overlaps_any,
    parse_address,
    parse_indicator,
    reserved_overlap,
    too_broad,
)

net = ipaddress.ip_network

DOCUMENTATION = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")


@pytest.mark.parametrize(
    ("type_", "value", "canonical"),
    [
        ("ip", "192.0.2.1", ("ip", "192.0.2.1")),
        ("ip", "0.0.0.0", ("ip", "0.0.0.0")),
        ("ip", "2001:DB8:0:0:0:0:0:1", ("ip", "2001:db8::1")),
        ("ip", "2001:db8::0:1", ("ip", "2001:db8::1")),
        ("ip", "2001:0db8:0000::0001", ("ip", "2001:db8::1")),
        ("ip", "2001:db8::ABCD", ("ip", "2001:db8::abcd")),
        # RFC 5952 4.2.2: a lone zero group is not shortened with ::
        ("ip", "2001:db8:1:1:1:1:0:1", ("ip", "2001:db8:1:1:1:1:0:1")),
        # 4.2.3: the longest run is shortened; on a tie, the first
        ("ip", "2001:db8:0:1:0:0:0:1", ("ip", "2001:db8:0:1::1")),
        ("ip", "2001:db8:0:0:1:0:0:1", ("ip", "2001:db8::1:0:0:1")),
        ("ip", "1:0:0:0:0:0:0:0", ("ip", "1::")),
        ("ip", "0:0:0:0:0:0:0:1", ("ip", "::1")),
        ("ip", "2001:db8::192.0.2.1", ("ip", "2001:db8::c000:201")),
        # IPv4-mapped, dotted or hex, either case: IPv4
        ("ip", "::ffff:192.0.2.1", ("ip", "192.0.2.1")),
        ("ip", "::ffff:c000:201", ("ip", "192.0.2.1")),
        ("ip", "::FFFF:C000:0201", ("ip", "192.0.2.1")),
        ("ip", "0:0:0:0:0:ffff:192.0.2.1", ("ip", "192.0.2.1")),
        ("cidr", "192.0.2.0/24", ("cidr", "192.0.2.0/24")),
        ("cidr", "203.0.113.7/32", ("ip", "203.0.113.7")),
        ("cidr", "2001:db8::1/128", ("ip", "2001:db8::1")),
        ("cidr", "2001:DB8::/32", ("cidr", "2001:db8::/32")),
        ("cidr", "2001:db8:0:0::/48", ("cidr", "2001:db8::/48")),
        ("cidr", "0.0.0.0/0", ("cidr", "0.0.0.0/0")),
        ("cidr", "::ffff:192.0.2.0/120", ("cidr", "192.0.2.0/24")),
        ("cidr", "::ffff:c000:200/120", ("cidr", "192.0.2.0/24")),
        ("cidr", "::ffff:203.0.113.7/128", ("ip", "203.0.113.7")),
        ("cidr", "::ffff:0:0/96", ("cidr", "0.0.0.0/0")),
    ],
)
def test_canonical(type_: str, value: str, canonical: tuple[str, str]) -> None:
    ind = parse_indicator(type_, value)
    assert (ind.type, ind.value) == canonical
    assert str(ind.network) == (
        ind.value if ind.type == "cidr" else f"{ind.value}/{ind.network.max_prefixlen}"
    )


@pytest.mark.parametrize(
    "spellings",
    [
        [("ip", "2001:db8::1"), ("ip", "2001:DB8:0:0:0:0:0:1"), ("cidr", "2001:db8::1/128")],
        [("ip", "192.0.2.1"), ("ip", "::ffff:192.0.2.1"), ("ip", "::ffff:c000:201")],
        [("ip", "192.0.2.1"), ("cidr", "192.0.2.1/32"), ("cidr", "::ffff:192.0.2.1/128")],
        [("cidr", "192.0.2.0/24"), ("cidr", "::ffff:192.0.2.0/120")],
    ],
)
def test_two_spellings_are_one_indicator(spellings: list[tuple[str, str]]) -> None:
    found = {parse_indicator(t, v) for t, v in spellings}
    assert len(found) == 1


def test_mapped_address_is_ipv4() -> None:
    assert parse_address("::ffff:192.0.2.1") == ipaddress.IPv4Address("192.0.2.1")
    assert parse_address("::ffff:192.0.2.1").version == 4
    assert parse_address("::192.0.2.1").version == 6  # IPv4-compatible is not mapped


@pytest.mark.parametrize(
    ("type_", "value", "detail"),
    [
        ("ip", "192.0.2.01", "no leading zeros"),
        ("ip", "192.0.2.001", "no leading zeros"),
        ("ip", "2001:db8::192.0.2.01", "IPv6"),
        ("ip", "fe80::1%eth0", "zone id"),
        ("ip", "fe80::1%1", "zone id"),
        ("ip", "::ffff:192.0.2.1%0", "zone id"),
        ("ip", " 192.0.2.1", "IPv4"),
        ("ip", "192.0.2.1 ", "IPv4"),
        ("ip", "192.0.2.1\n", "IPv4"),
        ("ip", " ::1", "IPv6"),
        ("ip", "::1\n", "IPv6"),
        ("ip", "", "IPv4"),
        ("ip", "192.0.2", "IPv4"),
        ("ip", "192.0.2.1.5", "IPv4"),
        ("ip", "256.0.0.1", "IPv4"),
        ("ip", "0x7f.0.0.1", "IPv4"),
        ("ip", "+1.2.3.4", "IPv4"),
        ("ip", "١٩٢.0.2.1", "IPv4"),
        ("ip", "192.0.2.1/32", "IPv4"),
        ("ip", "12345::1", "IPv6"),
        ("ip", "2001:db8::g", "IPv6"),
        ("ip", "1::2::3", "IPv6"),
        ("ip", "1:2:3:4:5:6:7:8:9", "IPv6"),
        ("ip", "2001:db8::1/128", "IPv6"),
        ("cidr", "192.0.2.1/24", "host bits set"),
        ("cidr", "2001:db8::1/64", "host bits set"),
        ("cidr", "::ffff:192.0.2.1/120", "host bits set"),
        ("cidr", "::ffff:192.0.2.0/95", "host bits set"),
        ("cidr", "192.0.2.0/024", "ADDRESS/PREFIX"),
        ("cidr", "192.0.2.0/+24", "ADDRESS/PREFIX"),
        ("cidr", "192.0.2.0/ 24", "ADDRESS/PREFIX"),
        ("cidr", "192.0.2.0/", "ADDRESS/PREFIX"),
        ("cidr", "192.0.2.0/24/1", "ADDRESS/PREFIX"),
        ("cidr", "192.0.2.0/٢٤", "ADDRESS/PREFIX"),
        ("cidr", "192.0.2.0", "ADDRESS/PREFIX"),
        ("cidr", "192.0.2.0/33", "at most /32"),
        ("cidr", "2001:db8::/129", "at most /128"),
        ("cidr", "::ffff:192.0.2.0/129", "at most /128"),
        ("cidr", "192.0.2.00/24", "no leading zeros"),
        ("host", "192.0.2.1", "ip or cidr"),
    ],
)
def test_refused(type_: str, value: str, detail: str) -> None:
    with pytest.raises(ValueError, match=re.escape(detail)):
        parse_indicator(type_, value)


@pytest.mark.parametrize(
    ("value", "reserved"),
    [
        ("0.1.2.3", "0.0.0.0/8"),
        ("10.0.0.1", "10.0.0.0/8"),
        ("10.255.0.0/16", "10.0.0.0/8"),
        ("100.64.0.0/16", "100.64.0.0/10"),
        ("100.127.255.0/24", "100.64.0.0/10"),
        ("100.100.100.100", "100.64.0.0/10"),
        ("127.0.0.1", "127.0.0.0/8"),
        ("169.254.169.254", "169.254.0.0/16"),
        ("172.31.0.0/16", "172.16.0.0/12"),
        ("192.0.0.8", "192.0.0.0/24"),
        ("192.168.1.0/24", "192.168.0.0/16"),
        ("198.19.0.0/16", "198.18.0.0/15"),
        ("224.0.0.1", "224.0.0.0/4"),
        ("255.255.255.255", "240.0.0.0/4"),
        ("::", "::/8"),
        ("::1", "::/8"),
        ("::192.0.2.1", "::/8"),
        ("64:ff9b::a00:1", "64:ff9b::/96"),  # NAT64 of 10.0.0.1
        ("64:ff9b::203.0.113.7", "64:ff9b::/96"),  # NAT64 of a public address
        ("64:ff9b:1:2::/64", "64:ff9b:1::/48"),
        ("100::/64", "100::/64"),
        ("100::1", "100::/64"),
        ("2001:0::/32", "2001::/23"),  # Teredo
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/23"),
        ("2001:1ff::/32", "2001::/23"),
        ("2002:0a00:0001::/48", "2002::/16"),  # 6to4 of 10.0.0.1
        ("2002:cb00:7107::/48", "2002::/16"),  # 6to4 of a public address
        ("fc00::1", "fc00::/7"),
        ("fd12:3456::/32", "fc00::/7"),
        ("fe80::/64", "fe80::/10"),
        ("ff02::1", "ff00::/8"),
        ("64:ff9b:2::/48", "::/8"),  # not NAT64, but inside ::/8 all the same
        # by overlap in the other direction: the range holds a reserved one
        ("172.0.0.0/8", "172.16.0.0/12"),
        ("2001::/16", "2001::/23"),
    ],
)
def test_reserved_by_overlap(value: str, reserved: str) -> None:
    """The most specific reserved range that overlaps is named."""
    found = reserved_overlap(parse_indicator("cidr" if "/" in value else "ip", value).network)
    assert found == net(reserved)


@pytest.mark.parametrize("value", ["0.0.0.0/0", "192.0.0.0/2", "::/0", "2000::/3"])
def test_a_range_holding_a_reserved_range_overlaps_it(value: str) -> None:
    assert reserved_overlap(net(value)) is not None


@pytest.mark.parametrize(
    "value",
    [
        *DOCUMENTATION,
        "192.0.2.1",
        "2001:db8::1",
        "1.1.1.1",
        "9.255.255.255",
        "11.0.0.0/16",
        "100.63.255.0/24",
        "100.128.0.0/16",
        "126.255.255.255",
        "128.0.0.0/16",
        "169.253.0.0/16",
        "172.15.255.0/24",
        "172.32.0.0/16",
        "192.0.1.0/24",
        "192.167.0.0/16",
        "198.17.0.0/16",
        "198.20.0.0/16",
        "223.255.255.255",
        "100:0:0:1::/64",
        "2001:200::/32",
        "2003::/16",
        "2606:4700::/32",
        "fbff::1",
        "fec0::/10",
        "feff::1",
    ],
)
def test_not_reserved(value: str) -> None:
    assert (
        reserved_overlap(parse_indicator("cidr" if "/" in value else "ip", value).network) is None
    )


def test_documentation_ranges_overlap_no_reserved_range() -> None:
    for doc in DOCUMENTATION:
        for reserved in RESERVED:
            assert not (reserved.version == net(doc).version and reserved.overlaps(net(doc)))


def test_reserved_list_is_the_protocol_list() -> None:
    assert [str(r) for r in RESERVED] == [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/8",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ]
    assert all(reserved_overlap(r) is not None for r in RESERVED)


@pytest.mark.parametrize(
    ("value", "broad_enough_to_refuse", "broad"),
    [
        ("0.0.0.0/0", True, True),
        ("8.0.0.0/7", True, True),
        ("8.0.0.0/15", True, True),
        ("8.8.0.0/16", False, True),
        ("8.8.8.0/23", False, True),
        ("8.8.8.0/24", False, False),
        ("8.8.8.8/32", False, False),
        ("2001:d00::/24", True, True),
        ("2001:db8::/31", True, True),
        ("2001:db8::/32", False, True),
        ("2001:db8::/47", False, True),
        ("2001:db8::/48", False, False),
        ("2001:db8::1/128", False, False),
    ],
)
def test_breadth(value: str, broad_enough_to_refuse: bool, broad: bool) -> None:
    assert too_broad(net(value)) is broad_enough_to_refuse
    assert is_broad(net(value)) is broad


@pytest.mark.parametrize(
    ("value", "nets", "found"),
    [
        ("192.0.2.7/32", ["198.51.100.0/24", "192.0.2.0/24"], "192.0.2.0/24"),
        ("192.0.2.0/23", ["192.0.3.0/24"], "192.0.3.0/24"),  # the other direction
        ("192.0.2.0/24", ["192.0.3.0/24"], None),
        ("192.0.2.0/24", ["::/0"], None),  # another version never overlaps
        ("::ffff:c000:200/120", ["::/0"], "::/0"),  # ipaddress itself: no conversion here
        ("2001:db8::/48", ["2001:db9::/64", "2001:db8:0:1::/64"], "2001:db8:0:1::/64"),
        ("2001:db8::/48", [], None),
    ],
)
def test_overlaps_any(value: str, nets: list[str], found: str | None) -> None:
    result = overlaps_any(net(value), (net(n) for n in nets))
    assert result == (net(found) if found else None)


def test_default_allowlist_is_the_migration_seed() -> None:
    sql = (resources.files("honeymesh_hub") / "migrations" / "0001_identity.sql").read_text()
    seeded = re.search(r"'public resolver'.*?ARRAY\[(.*?)\]", sql, re.S)
    assert seeded is not None
    cidrs = {net(c) for c in re.findall(r"'([^']+)'", seeded.group(1))}
    assert {n for n, _ in DEFAULT_ALLOWLIST} == cidrs
    assert {reason for _, reason in DEFAULT_ALLOWLIST} == {"public resolver"}
    assert len(DEFAULT_ALLOWLIST) == 11
    assert all(reserved_overlap(n) is None for n, _ in DEFAULT_ALLOWLIST)


def test_indicator_is_a_frozen_value() -> None:
    ind = parse_indicator("ip", "192.0.2.1")
    assert ind == Indicator("ip", "192.0.2.1", net("192.0.2.1/32"))
    with pytest.raises(AttributeError):
        ind.value = "x"  # type: ignore[misc]
