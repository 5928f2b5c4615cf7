"""Addresses and ranges (PROTOCOL.md section 6): reserved, too-broad and broad ranges,
overlap. Pure.

Parsing and the canonical form are the shared protocol's
(``honeymesh_client.protocol.indicators``, re-exported here), so the hub reads an
indicator with the very function nodes canonicalise with before signing (strict:
no leading zero in an IPv4 octet or a prefix, no zone id; RFC 5952 IPv6, IPv4-mapped
converted to IPv4, a /32 or /128 cidr an ip).

Overlap is plain interval overlap of the two blocks of the same IP version: for
CIDR blocks that is "one contains the other" in either direction.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_network

from honeymesh_client.protocol.indicators import (
    Address,
    Indicator,
    Network,
    parse_address,
    parse_indicator,
)

__all__ = [
    "DEFAULT_ALLOWLIST",
    "RESERVED",
    "Address",
    "Indicator",
    "Network",
    "is_broad",
    "overlaps_any",
    "parse_address",
    "parse_indicator",
    "reserved_overlap",
    "too_broad",
]

# PROTOCOL.md section 6, compared by overlap with the canonical network. The IPv6
# ranges that embed IPv4 addresses (IPv4-compatible and -mapped in ::/8, NAT64
# 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32 inside
# 2001::/23) are refused whole, so no IPv4 address is blocked in disguise. The
# documentation ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and
# 2001:db8::/32 overlap none of these (2001::/23 ends at 2001:1ff:ffff:...).
RESERVED: tuple[Network, ...] = tuple(
    ip_network(text)
    for text in (
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

# PROTOCOL.md section 4: a new hub starts with these allowlisted (the migration
# 0001_identity.sql seeds the same list, reason and all; a unit test keeps them equal).
DEFAULT_ALLOWLIST: tuple[tuple[Network, str], ...] = tuple(
    (ip_network(text), "public resolver")
    for text in (
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


def _bounds(net: Network) -> tuple[int, int]:
    """First and last address of the block, as integers."""
    first = int(net.network_address)
    return first, first | ((1 << (net.max_prefixlen - net.prefixlen)) - 1)


# Most specific first, so a NAT64 address names 64:ff9b::/96 rather than ::/8 holding it.
_RESERVED_V4: tuple[tuple[int, int, Network], ...] = tuple(
    (*_bounds(r), r) for r in sorted(RESERVED, key=lambda r: -r.prefixlen) if r.version == 4
)
_RESERVED_V6: tuple[tuple[int, int, Network], ...] = tuple(
    (*_bounds(r), r) for r in sorted(RESERVED, key=lambda r: -r.prefixlen) if r.version == 6
)


def reserved_overlap(net: Network) -> Network | None:
    """A reserved range that overlaps `net` (either contains the other), the most
    specific one when several do; None when none does."""
    first, last = _bounds(net)
    for lo, hi, reserved in _RESERVED_V4 if net.version == 4 else _RESERVED_V6:
        if first <= hi and lo <= last:
            return reserved
    return None


def overlaps_any(net: Network, nets: Iterable[Network]) -> Network | None:
    """The first of `nets` of the same IP version that overlaps `net`, else None."""
    first, last = _bounds(net)
    version = net.version
    for other in nets:
        if other.version != version:
            continue
        lo, hi = _bounds(other)
        if first <= hi and lo <= last:
            return other
    return None


def too_broad(net: Network) -> bool:
    """IPv4 shorter than /16 or IPv6 shorter than /32: refused at publish."""
    return net.prefixlen < (16 if net.version == 4 else 32)


def is_broad(net: Network) -> bool:
    """Broader than IPv4 /24 or IPv6 /48: never auto-approved, two reviewers."""
    return net.prefixlen < (24 if net.version == 4 else 48)
