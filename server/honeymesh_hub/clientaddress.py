"""The real client of a request, behind the trusted proxies (PROTOCOL.md 9), and the
source address that rate limits count by."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web

from .config import Config


def client_address(
    request: web.Request, config: Config
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The real client: the peer, or, when the peer is a trusted proxy, the right-most
    X-Forwarded-For address that is not itself a trusted proxy (PROTOCOL.md 9)."""
    addr = _parse_ip(request.remote or "")
    if addr is not None and config.trusted_proxies and _trusted(addr, config):
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        for item in reversed(forwarded.split(",")):
            candidate = _parse_ip(item.strip())
            if candidate is None:
                break
            addr = candidate
            if not _trusted(candidate, config):
                break
    return addr


def source_address(request: web.Request, config: Config) -> str:
    """The key rate limits count by: the client address, IPv6 per /64."""
    addr = client_address(request, config)
    if addr is None:
        return request.remote or "unknown"
    return _source_key(addr)


# Both run on every request, for the same few thousand peers: parsed once each
# (bounded; a flood of new addresses only turns the caches over).
@lru_cache(maxsize=8192)
def _source_key(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


@lru_cache(maxsize=8192)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, config: Config) -> bool:
    return any(addr.version == net.version and addr in net for net in config.trusted_proxies)
