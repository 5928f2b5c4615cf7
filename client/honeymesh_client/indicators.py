"""Indicators in the hub's canonical form (PROTOCOL.md section 6), client side.

The node parses what an operator types (``--ip``, ``--cidr``) and what a
provenance answer carries, and compares indicators by canonical form. The
parser is the shared protocol's (:mod:`honeymesh_client.protocol.indicators`),
the very one the hub reads a signal with, so the node refuses before signing
whatever the hub would refuse. Pure: no I/O.
"""

from __future__ import annotations

from .protocol.indicators import Indicator, Network, parse_indicator

__all__ = ["Indicator", "Network", "canonical", "network_of"]


def network_of(type_: str, value: str) -> Network:
    """The network an indicator covers (a single address is a /32 or /128)."""
    return parse_indicator(type_, value).network


def canonical(type_: str, value: str) -> Indicator:
    """Parse an indicator; ValueError with a short sentence when it is not one."""
    return parse_indicator(type_, value)
