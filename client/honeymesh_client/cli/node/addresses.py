"""The hub's own addresses, which no export may block (PROTOCOL.md 12).

Resolved from the hub URL's host each time; the last resolution is saved in the
home (``hub-addresses.json``) so a name that stops resolving stays protected.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from ...errors import ClientError
from ...feedstate import atomic_write
from .home import PROG, Home, note

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str], Sequence[str]]  # a host name to its addresses; OSError if it fails


def getaddrinfo(host: str) -> Sequence[str]:
    """The system resolver: every TCP address of ``host``."""
    return [str(i[4][0]) for i in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]


def address(text: str) -> Address | None:
    """``text`` as an address (zone dropped, IPv4-mapped unwrapped); None if it is not one."""
    try:
        addr = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def _ordered(found: set[Address]) -> list[Address]:
    return sorted(found, key=lambda a: (a.version, int(a)))


def protected_addresses(url: str, resolve: Resolve | None = None) -> list[Address] | None:
    """Every address the hub's host name resolves to (or is); None when it does not resolve."""
    host = urlsplit(url).hostname or ""
    literal = address(host)
    if literal is not None:
        return [literal]
    try:
        found = {a for text in (resolve or getaddrinfo)(host) if (a := address(text)) is not None}
    except (OSError, UnicodeError):
        return None
    return _ordered(found) or None


def known_hub_addresses(home: Home, host: str) -> list[Address]:
    """The addresses last resolved for ``host``, kept in the home; [] if none."""
    try:
        data = json.loads(home.hub_addresses_path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("host") != host:
        return []
    texts = data.get("addresses")
    if not isinstance(texts, list):
        return []
    return [a for t in texts if isinstance(t, str) and (a := address(t)) is not None]


def _save(home: Home, host: str, resolved: list[Address]) -> None:
    record = {"host": host, "addresses": [str(a) for a in resolved]}
    home.ensure()
    atomic_write(home.hub_addresses_path, json.dumps(record).encode() + b"\n")


def hub_addresses(
    home: Home, hub_url: str, peer: str | None, resolve: Resolve | None = None
) -> list[Address]:
    """The hub's own addresses, never to be blocked (PROTOCOL.md 12).

    Resolved now, and kept in the home when they are; when resolution fails, the
    ones kept last time. The address of the connection the hub answered on is
    protected too. Knowing none, no export may be written: ClientError.
    """
    host = urlsplit(hub_url).hostname or ""
    resolved = protected_addresses(hub_url, resolve)
    if resolved is not None:
        found = set(resolved)
        if address(host) is None and known_hub_addresses(home, host) != resolved:
            _save(home, host, resolved)
    else:
        found = set(known_hub_addresses(home, host))
        if found:
            note(f"{PROG}: cannot resolve {host}; protecting its last known addresses.")
    if peer is not None and (addr := address(peer)) is not None:
        found.add(addr)
    if not found:
        raise ClientError(
            f"cannot resolve the hub's host {host} and no earlier address of it is known, so no "
            "export was written (the last files are kept), lest it block the hub"
        )
    return _ordered(found)
