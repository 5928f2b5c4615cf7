"""Indicators: strict parsing and the one canonical form (PROTOCOL.md section 6). Pure.

Nodes and the hub read an indicator with these very functions, so a node refuses,
before signing, every spelling the hub would refuse, and both name an address the
same way. Policy (reserved and too-broad ranges) is the hub's, in its addresses.py.

Strict: no leading zero in an IPv4 octet, no zone id (``%``), nothing around the
address; IPv6 groups are 1 to 4 hex digits in either case (RFC 4291 2.2, the
dotted IPv4 tail included). The stdlib parser already refuses leading zeros
(Python >= 3.9.5), whitespace, signs and non-ASCII digits, but accepts a zone id,
so that one is checked here; a cidr prefix is ASCII decimal without leading zeros.

Canonical form: RFC 5952 for IPv6 (``IPv6Address.__str__``: lowercase, no leading
zeros, the longest run of two or more zero groups, the first on a tie, shortened to
``::``, a lone zero group kept), IPv4-mapped IPv6 (``::ffff:0:0/96``) converted to
IPv4 first (a mapped ``/n`` becomes IPv4 ``/n-96``), a ``/32`` or ``/128`` ``cidr``
an ``ip``. Two spellings of one address are one, equal, indicator.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = ["Address", "Indicator", "Network", "parse_address", "parse_indicator"]

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_V4_BITS = 32
_V6_BITS = 128
_MAPPED_HIGH = 0xFFFF  # ::ffff:0:0/96: an address whose top 96 bits are 0...0ffff
_V4_MASK = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Indicator:
    """An address or range in canonical form; equal for every spelling of it."""

    type: str  # "ip" | "cidr"
    value: str  # canonical text: "192.0.2.1", "2001:db8::/32", "198.51.100.0/24"
    network: Network  # /32 or /128 for an "ip"

    def as_json(self) -> dict[str, str]:
        """The signal's ``indicator`` member."""
        return {"type": self.type, "value": self.value}


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
