"""The active set as files a firewall loads (pure: entries in, text out).

Formats: ``json`` (``{"decisions": [...]}``, the feed's entries sorted by
address), the node's own, and ``plain``, ``csv``, ``nft`` and ``ipset``, which
the hub's block lists serve too: those are rendered by the shared protocol's
:mod:`honeymesh_client.protocol.blocklists`, so each exists once. Output is
sorted and deterministic: rewriting an unchanged set gives identical bytes.

:func:`exclude` drops every entry that covers one of the given addresses (the
hub's own): a node must never block its way to the hub.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .indicators import Network, network_of
from .protocol import blocklists
from .protocol.blocklists import IPSET_MAXELEM, IPSET_V4, IPSET_V6, NFT_TABLE, Decision
from .protocol.indicators import Address

__all__ = ["FORMATS", "IPSET_MAXELEM", "IPSET_V4", "IPSET_V6", "NFT_TABLE", "exclude", "render"]

FORMATS = ("json", "plain", "nft", "ipset", "csv")


def _network(entry: dict[str, Any]) -> Network | None:
    ind = entry.get("indicator")
    if not isinstance(ind, dict):
        return None
    try:
        return network_of(str(ind.get("type")), str(ind.get("value")))
    except ValueError:
        return None


def exclude(
    entries: Iterable[dict[str, Any]], protected: Sequence[Address]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped): dropped entries cover one of ``protected``."""
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for entry in entries:
        net = _network(entry)
        if net is not None and blocklists.overlaps_any(net, protected):
            dropped.append(entry)
        else:
            kept.append(entry)
    return kept, dropped


def _json(entries: Iterable[dict[str, Any]]) -> str:
    pairs = [(n, e) for e in entries if (n := _network(e)) is not None]
    pairs.sort(key=lambda p: (p[0].version, int(p[0].network_address), p[0].prefixlen))
    return json.dumps({"decisions": [e for _, e in pairs]}, indent=2, sort_keys=True) + "\n"


def render(fmt: str, entries: Iterable[dict[str, Any]], *, now: datetime | None = None) -> str:
    """``entries`` (feed entries) in ``fmt``, less those expired at ``now`` (default:
    the current time)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    when = now if now is not None else datetime.now(UTC)
    if fmt == "json":
        return _json(e for e in entries if not _expired(e, when))
    decisions = [d for e in entries if (d := Decision.from_entry(e)) is not None]
    return blocklists.render(fmt, decisions, now=when).decode("utf-8")


def _expired(entry: dict[str, Any], now: datetime) -> bool:
    decision = Decision.from_entry(entry)
    return decision is not None and decision.expires is not None and decision.expires <= now
