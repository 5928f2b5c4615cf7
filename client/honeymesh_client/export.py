"""The active set as files a firewall loads (pure: entries in, text out).

Formats:
- ``json``: ``{"decisions": [...]}``, the feed's entries sorted by address;
- ``plain``: one address or CIDR per line;
- ``csv``: a header and one row per decision;
- ``nft``: a complete ``nft -f`` script: it creates ``table inet honeymesh``
  (deleting any earlier one in the same transaction, so loading it again
  replaces the rules atomically) with sets ``ipv4`` and ``ipv6`` (``flags
  interval``) and input and forward chains that drop their sources;
- ``ipset``: ``ipset restore`` input: ``hash:net`` sets ``honeymesh4`` and
  ``honeymesh6`` (``-exist``), filled through a temporary set and ``swap``,
  so a firewall rule matching the set never sees it half filled.

Interval sets refuse overlapping elements, so nft elements are merged first
(an address inside an approved range is covered by the range). Output is
sorted and deterministic: rewriting an unchanged set gives identical bytes.

:func:`exclude` drops every entry that covers one of the given addresses (the
hub's own): a node must never block its way to the hub.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections.abc import Iterable, Sequence
from typing import Any

from .indicators import Network, network_of

__all__ = ["FORMATS", "NFT_TABLE", "exclude", "render"]

FORMATS = ("json", "plain", "nft", "ipset", "csv")
NFT_TABLE = "honeymesh"
IPSET_V4 = "honeymesh4"
IPSET_V6 = "honeymesh6"
IPSET_MAXELEM = 1048576
_CSV_FIELDS = (
    "id",
    "type",
    "value",
    "scope",
    "confidence",
    "reporters",
    "scenarios",
    "origin",
    "approved_at",
    "expires_at",
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _network(entry: dict[str, Any]) -> Network | None:
    ind = entry.get("indicator")
    if not isinstance(ind, dict):
        return None
    try:
        return network_of(str(ind.get("type")), str(ind.get("value")))
    except ValueError:
        return None


def _sorted(entries: Iterable[dict[str, Any]]) -> list[tuple[Network, dict[str, Any]]]:
    """(network, entry) for every entry with a valid indicator, v4 first, by address."""
    pairs = [(n, e) for e in entries if (n := _network(e)) is not None]
    pairs.sort(key=lambda p: (p[0].version, int(p[0].network_address), p[0].prefixlen))
    return pairs


def exclude(
    entries: Iterable[dict[str, Any]], protected: Sequence[Address]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped): dropped entries cover one of ``protected``."""
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for entry in entries:
        net = _network(entry)
        if net is not None and any(a.version == net.version and a in net for a in protected):
            dropped.append(entry)
        else:
            kept.append(entry)
    return kept, dropped


def _text(net: Network) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def render(fmt: str, entries: Iterable[dict[str, Any]]) -> str:
    pairs = _sorted(entries)
    if fmt == "json":
        return json.dumps({"decisions": [e for _, e in pairs]}, indent=2, sort_keys=True) + "\n"
    if fmt == "plain":
        return "".join(f"{_text(n)}\n" for n, _ in pairs)
    if fmt == "csv":
        return _csv(pairs)
    if fmt == "nft":
        return _nft([n for n, _ in pairs])
    if fmt == "ipset":
        return _ipset([n for n, _ in pairs])
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _csv(pairs: list[tuple[Network, dict[str, Any]]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    for net, e in pairs:
        ind = e.get("indicator") or {}
        writer.writerow(
            [
                e.get("id", ""),
                ind.get("type", ""),
                _text(net),
                e.get("scope", ""),
                e.get("confidence", ""),
                e.get("reporters", ""),
                " ".join(str(s) for s in e.get("scenarios") or []),
                e.get("origin", ""),
                e.get("approved_at", ""),
                e.get("expires_at", ""),
            ]
        )
    return out.getvalue()


def _merged(nets: list[Network], version: int) -> list[Network]:
    if version == 4:
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        return list(ipaddress.collapse_addresses(v4))
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return list(ipaddress.collapse_addresses(v6))


def _nft_set(name: str, addr_type: str, nets: list[Network]) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {addr_type}", "\t\tflags interval"]
    if nets:
        lines.append("\t\telements = {")
        lines += [f"\t\t\t{_text(n)}," for n in nets]
        lines.append("\t\t}")
    lines.append("\t}")
    return lines


def _nft(nets: list[Network]) -> str:
    v4, v6 = _merged(nets, 4), _merged(nets, 6)
    lines = [
        "#!/usr/sbin/nft -f",
        f"# HoneyMesh active set: {len(v4)} IPv4 and {len(v6)} IPv6 ranges.",
        "# Load with: nft -f FILE (replaces the table in one transaction).",
        f"table inet {NFT_TABLE}",
        f"delete table inet {NFT_TABLE}",
        f"table inet {NFT_TABLE} {{",
        *_nft_set("ipv4", "ipv4_addr", v4),
        *_nft_set("ipv6", "ipv6_addr", v6),
    ]
    for chain, hook in (("input", "input"), ("forward", "forward")):
        lines += [
            f"\tchain {chain} {{",
            f"\t\ttype filter hook {hook} priority -10; policy accept;",
            "\t\tip saddr @ipv4 drop",
            "\t\tip6 saddr @ipv6 drop",
            "\t}",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _ipset(nets: list[Network]) -> str:
    lines = ["# HoneyMesh active set. Load with: ipset restore -f FILE"]
    for name, family, version in ((IPSET_V4, "inet", 4), (IPSET_V6, "inet6", 6)):
        members = [n for n in nets if n.version == version]
        # Fixed parameters: `create -exist` refuses a set made with other ones.
        maxelem = max(IPSET_MAXELEM, len(members))
        tmp = f"{name}-new"
        spec = f"hash:net family {family} maxelem {maxelem}"
        lines += [
            f"create {name} {spec} -exist",
            f"create {tmp} {spec} -exist",
            f"flush {tmp}",
            *(f"add {tmp} {_text(n)} -exist" for n in members),
            f"swap {tmp} {name}",
            f"destroy {tmp}",
        ]
    return "\n".join(lines) + "\n"
