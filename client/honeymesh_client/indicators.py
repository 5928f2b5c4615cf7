"""Indicators in the hub's canonical form (PROTOCOL.md section 6), client side.

The node parses what an operator types (``--ip``, ``--cidr``) and what a
provenance answer carries, and compares indicators by canonical form: RFC 5952
IPv6 text, IPv4-mapped IPv6 turned into IPv4, a ``/32`` or ``/128`` cidr an
``ip``. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["Indicator", "Network", "canonical", "network_of"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True, slots=True)
class Indicator:
    type: str  # "ip" or "cidr"
    value: str  # canonical text

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text:
        raise ValueError(f"{text!r} has a zone id, which is not allowed")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr in _MAPPED:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr


def network_of(type_: str, value: str) -> Network:
    """The network an indicator covers (a single address is a /32 or /128)."""
    if type_ == "ip":
        addr = _address(value)
        return ipaddress.ip_network(addr)
    if type_ != "cidr":
        raise ValueError(f"an indicator's type is ip or cidr, not {type_!r}")
    addr_text, slash, prefix_text = value.partition("/")
    if not slash or not prefix_text.isdigit():
        raise ValueError(f"{value!r} is not ADDRESS/PREFIX")
    prefix = int(prefix_text)
    addr = _address(addr_text)
    if isinstance(addr, ipaddress.IPv4Address) and ":" in addr_text:
        if prefix < 96:
            raise ValueError(f"{value!r} has host bits set")
        prefix -= 96
    try:
        return ipaddress.ip_network((addr, prefix), strict=True)
    except ValueError as exc:
        if "host bits" in str(exc):
            raise ValueError(f"{value!r} has host bits set") from None
        raise ValueError(f"{value!r} is not a valid network") from None


def canonical(type_: str, value: str) -> Indicator:
    """Parse an indicator; ValueError with a short sentence when it is not one."""
    net = network_of(type_, value)
    if net.prefixlen == net.max_prefixlen:
        return Indicator("ip", str(net.network_address))
    return Indicator("cidr", str(net))
