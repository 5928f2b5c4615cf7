"""Addresses and ranges (PROTOCOL.md section 6): strict parsing, canonical form,
reserved and too-broad ranges. Pure.

Canonical form: RFC 5952 for IPv6 (Python's `compressed`), IPv4-mapped IPv6
(`::ffff:0:0/96`) converted to IPv4, a /32 or /128 `cidr` stored as an `ip`. Two
spellings of one address are one indicator.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_HEX = frozenset("0123456789abcdefABCDEF")

# Compared by overlap with the canonical network. The IPv6 ones that embed IPv4
# addresses (NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo in
# 2001::/23) are refused whole, so no IPv4 address is blocked in disguise.
RESERVED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
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
    )
)

DEFAULT_ALLOWLIST: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(a), "public resolver")
    for a in (
        "1.1.1.1",
        "1.0.0.1",
        "8.8.8.8",
        "8.8.4.4",
        "9.9.9.9",
        "149.112.112.112",
        "2606:4700:4700::1111",
        "2606:4700:4700::1001",
        "2001:4860:4860::8888",
        "2001:4860:4860::8844",
        "2620:fe::fe",
    )
)


@dataclass(frozen=True, slots=True)
class Indicator:
    type: str  # "ip" | "cidr"
    value: str  # canonical text
    network: Network


def _check_text(text: str) -> None:
    if not text or text != text.strip() or "%" in text:
        raise ValueError("not an IP address (no spaces or zone ids)")
    if ":" in text:
        head, _, tail = text.rpartition(":")
        groups = head.split(":") + ([tail] if "." not in tail else [])
        for g in groups:
            if g and (len(g) > 4 or not set(g) <= _HEX):
                raise ValueError("IPv6 groups are 1 to 4 hex digits")
        if "." in tail:
            _check_ipv4(tail)
    else:
        _check_ipv4(text)


def _check_ipv4(text: str) -> None:
    parts = text.split(".")
    if len(parts) != 4 or any(
        not p.isascii() or not p.isdigit() or (len(p) > 1 and p[0] == "0") for p in parts
    ):
        raise ValueError("not an IPv4 address (four decimal octets, no leading zeros)")


def parse_address(text: str) -> Address:
    """Strict: no leading zero in an IPv4 octet, no zone id, IPv4-mapped made IPv4."""
    _check_text(text)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_indicator(type_: str, value: str) -> Indicator:
    if type_ == "ip":
        addr = parse_address(value)
        return Indicator("ip", str(addr), ipaddress.ip_network(addr))
    if type_ != "cidr":
        raise ValueError("indicator type is ip or cidr")
    addr_text, sep, prefix_text = value.partition("/")
    if (
        not sep
        or not prefix_text.isascii()
        or not prefix_text.isdigit()
        or (len(prefix_text) > 1 and prefix_text[0] == "0")
    ):
        raise ValueError("a cidr is ADDRESS/PREFIX")
    addr = parse_address(addr_text)
    prefix = int(prefix_text)
    if ":" in addr_text and isinstance(addr, ipaddress.IPv4Address):
        # IPv4-mapped: ::ffff:a.b.c.d/n covers IPv4 a.b.c.d/(n-96).
        if prefix < 96:
            raise ValueError("an IPv4-mapped range is at least /96")
        prefix -= 96
    try:
        net = ipaddress.ip_network(f"{addr}/{prefix}", strict=True)
    except ValueError as exc:
        if "host bits" in str(exc):
            raise ValueError("host bits set") from None
        raise ValueError("not a CIDR range") from None
    if net.num_addresses == 1:
        return Indicator("ip", str(net.network_address), net)
    return Indicator("cidr", str(net), net)


def reserved_overlap(net: Network) -> Network | None:
    for reserved in RESERVED:
        if reserved.version == net.version and reserved.overlaps(net):
            return reserved
    return None


def overlaps_any(net: Network, nets: Iterable[Network]) -> Network | None:
    for other in nets:
        if other.version == net.version and other.overlaps(net):
            return other
    return None


def too_broad(net: Network) -> bool:
    """IPv4 shorter than /16 or IPv6 shorter than /32: refused at publish."""
    return net.prefixlen < (16 if net.version == 4 else 32)


def is_broad(net: Network) -> bool:
    """Broader than IPv4 /24 or IPv6 /48: never auto-approved, two reviewers."""
    return net.prefixlen < (24 if net.version == 4 else 48)
