"""Addresses and ranges (PROTOCOL.md section 6): strict parsing, canonical form,
reserved, too-broad and broad ranges, overlap. Pure.

Strict: no leading zero in an IPv4 octet, no zone id (``%``), nothing around the
address; IPv6 groups are 1 to 4 hex digits in either case (RFC 4291 2.2, the
dotted IPv4 tail included). The stdlib parser already refuses leading zeros
(Python >= 3.9.5), whitespace, signs and non-ASCII digits, but accepts a zone id,
so that one is checked here; the unit tests pin the rest.

Canonical form: RFC 5952 for IPv6 (``IPv6Address.__str__``: lowercase, no leading
zeros, the longest run of two or more zero groups, the first on a tie, shortened to
``::``, a lone zero group kept), IPv4-mapped IPv6 (``::ffff:0:0/96``) converted to
IPv4 first (a mapped ``/n`` becomes IPv4 ``/n-96``), a ``/32`` or ``/128`` ``cidr``
stored as an ``ip``. Two spellings of one address are one, equal, indicator.

Overlap is plain interval overlap of the two blocks of the same IP version: for
CIDR blocks that is "one contains the other" in either direction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

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

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_V4_BITS = 32
_V6_BITS = 128
_MAPPED_HIGH = 0xFFFF  # ::ffff:0:0/96: an address whose top 96 bits are 0...0ffff
_V4_MASK = 0xFFFFFFFF

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


@dataclass(frozen=True, slots=True)
class Indicator:
    """An address or range in canonical form; equal for every spelling of it."""

    type: str  # "ip" | "cidr"
    value: str  # canonical text: "192.0.2.1", "2001:db8::/32", "198.51.100.0/24"
    network: Network  # /32 or /128 for an "ip"


def parse_address(text: str) -> Address:
    """One address, strictly; an IPv4-mapped IPv6 address comes back as IPv4.

    Raises ValueError with a short sentence for the caller.
    """
    if ":" in text:
        if "%" in text:
            raise ValueError("a zone id (%...) is not allowed in an address")
        try:
            v6 = IPv6Address(text)
        except ValueError:
            raise ValueError(
                "not an IPv6 address (eight groups of 1 to 4 hex digits, at most one ::)"
            ) from None
        n = int(v6)
        if n >> 32 == _MAPPED_HIGH:
            return IPv4Address(n & _V4_MASK)
        return v6
    try:
        return IPv4Address(text)
    except ValueError:
        raise ValueError(
            "not an IPv4 address (four decimal octets 0 to 255, no leading zeros)"
        ) from None


def _single(addr: Address, text: str) -> Indicator:
    if isinstance(addr, IPv4Address):
        # Strict dotted-quad text that parsed is already canonical; a mapped one is not.
        value = text if ":" not in text else str(addr)
        return Indicator("ip", value, IPv4Network((int(addr), _V4_BITS)))
    return Indicator("ip", str(addr), IPv6Network((int(addr), _V6_BITS)))


def parse_indicator(type_: str, value: str) -> Indicator:
    """`ip` or `cidr` text -> canonical Indicator; ValueError with a short sentence.

    A cidr must be a network address (host bits set -> "host bits set"); its prefix
    is decimal without leading zeros. A /32 or /128 cidr is an `ip`.
    """
    if type_ == "ip":
        return _single(parse_address(value), value)
    if type_ != "cidr":
        raise ValueError("the indicator type is ip or cidr")
    addr_text, slash, prefix_text = value.partition("/")
    if (
        not slash
        or not prefix_text.isascii()
        or not prefix_text.isdigit()
        or len(prefix_text) > 3
        or (len(prefix_text) > 1 and prefix_text[0] == "0")
    ):
        raise ValueError("a cidr is ADDRESS/PREFIX, the prefix in decimal without leading zeros")
    prefix = int(prefix_text)
    addr = parse_address(addr_text)
    if isinstance(addr, IPv4Address):
        if ":" in addr_text:  # IPv4-mapped: ::ffff:a.b.c.d/n is IPv4 a.b.c.d/(n - 96)
            if prefix > _V6_BITS:
                raise ValueError("an IPv6 prefix is at most /128")
            if prefix < 96:  # the mapped prefix's own ffff bits would be host bits
                raise ValueError("host bits set")
            prefix -= 96
        elif prefix > _V4_BITS:
            raise ValueError("an IPv4 prefix is at most /32")
        bits = _V4_BITS
    else:
        if prefix > _V6_BITS:
            raise ValueError("an IPv6 prefix is at most /128")
        bits = _V6_BITS
    if prefix == bits:
        return _single(addr, addr_text)
    n = int(addr)
    if n & ((1 << (bits - prefix)) - 1):
        raise ValueError("host bits set")
    net: Network = IPv4Network((n, prefix)) if bits == _V4_BITS else IPv6Network((n, prefix))
    return Indicator("cidr", f"{addr}/{prefix}", net)


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
