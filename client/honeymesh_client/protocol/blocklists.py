"""Block lists as firewalls load them (PROTOCOL.md 12 and 13.2). Pure: records in, bytes out.

The node's ``pull --format plain|csv|nft|ipset`` and the hub's ``GET /v1/blocklist``
render with these very functions, so a format shared by both exists once.

Formats:
- ``plain``: one address or CIDR a line (a /32 or /128 as the bare address);
- ``csv``: a header and one row per decision;
- ``nft``: a complete ``nft -f`` script: it creates ``table inet honeymesh``
  (deleting any earlier one in the same transaction, so loading it again
  replaces the rules atomically) with sets ``ipv4`` and ``ipv6`` (``flags
  interval``) and input and forward chains that drop their sources. Interval
  sets refuse overlapping elements, so elements are merged first (an address
  inside a listed range is covered by the range);
- ``ipset``: ``ipset restore`` input: ``hash:net`` sets ``honeymesh4`` and
  ``honeymesh6`` (``-exist``), filled through a temporary set and ``swap``, so
  a firewall rule matching the set never sees it half filled;
- ``mikrotik``: a RouterOS script (``/import``): it removes the address-list
  ``listname`` (IPv4 and IPv6), then adds each entry with its ``timeout``
  (whole seconds until ``expires_at``, rounded up, as ``1d2h3m4s``; at most
  RouterOS's 35w3d13h13m56s) and its scenarios, joined by ``,``, as the
  comment. In every quoted string, each character but letters, digits, space
  and ``._/,:=@+-`` is written as ``\\HH`` escapes of its UTF-8 bytes, so no
  text can end the string, substitute a variable or end the line;
- ``f5``: BIG-IP feed-list lines ``address,mask,bl,category``: the prefix
  length as the mask, the first scenario as the category (characters outside
  ``[A-Za-z0-9._-]`` as ``_``; the list name when there is none);
- ``juniper``: one CIDR a line, ``/32`` and ``/128`` written out.

``mikrotik``, ``f5`` and ``juniper`` list each network once (the latest expiry,
every scenario); ``plain``, ``csv``, ``nft`` and ``ipset`` are the node's
historical forms. ``family`` 4 or 6 keeps one family. ``never`` (the hub's own
addresses) drops every entry that overlaps one of its networks. An entry whose
``expires_at`` is not after ``now`` is not active and is left out.

Output is sorted by address then by every field, and deterministic: the same
set gives the same bytes whatever the input order, so :func:`etag` of the bytes
is a strong ETag.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .indicators import Address, Network, parse_indicator
from .times import read_rfc3339

__all__ = [
    "FAMILIES",
    "FORMATS",
    "Decision",
    "check_listname",
    "etag",
    "overlaps_any",
    "render",
    "routeros_duration",
]

FORMATS = ("plain", "csv", "nft", "ipset", "mikrotik", "f5", "juniper")
FAMILIES = (4, 6)
NFT_TABLE = "honeymesh"
IPSET_V4 = "honeymesh4"
IPSET_V6 = "honeymesh6"
IPSET_MAXELEM = 1048576
# RouterOS keeps a timeout in 2**31 hundredths of a second: 35w3d13h13m56s.
ROUTEROS_MAX_TIMEOUT = 21474836
CSV_FIELDS = (
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
_ROUTEROS_PLAIN = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ._/,:=@+-"
)
_LISTNAME = re.compile(r"[A-Za-z0-9._-]{1,63}\Z")
_F5_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# Anything that could end a line in some reader: C0, DEL, C1, U+2028, U+2029.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _cell(value: Any) -> str:
    """A field as the csv module writes it: None is empty, others their str()."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True)
class Decision:
    """One listed decision, as the node's feed state and the hub's rows both give it.

    ``type``/``value`` are made canonical (section 6) on construction (ValueError
    when they are not an indicator); the other fields are wire text, written as
    they are (``expires_at`` RFC 3339, empty when unknown).
    """

    type: str
    value: str
    scenarios: tuple[str, ...] = ()
    expires_at: str = ""
    id: str = ""
    scope: str = ""
    confidence: str = ""
    reporters: str = ""
    origin: str = ""
    approved_at: str = ""
    network: Network = field(init=False, compare=False, repr=False)
    expires: datetime | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        ind = parse_indicator(self.type, self.value)
        object.__setattr__(self, "type", ind.type)
        object.__setattr__(self, "value", ind.value)
        object.__setattr__(self, "network", ind.network)
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        try:
            expires = read_rfc3339(self.expires_at) if self.expires_at else None
        except ValueError:  # not a time the hub writes: never drop an entry on a guess
            expires = None
        object.__setattr__(self, "expires", expires)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Decision | None:
        """A feed entry (section 8's ``added`` member); None without a valid indicator."""
        ind = entry.get("indicator")
        if not isinstance(ind, Mapping):
            return None
        try:
            return cls(
                type=str(ind.get("type")),
                value=str(ind.get("value")),
                scenarios=tuple(str(s) for s in entry.get("scenarios") or ()),
                expires_at=_cell(entry.get("expires_at")),
                id=_cell(entry.get("id")),
                scope=_cell(entry.get("scope")),
                confidence=_cell(entry.get("confidence")),
                reporters=_cell(entry.get("reporters")),
                origin=_cell(entry.get("origin")),
                approved_at=_cell(entry.get("approved_at")),
            )
        except ValueError:
            return None

    def sort_key(self) -> tuple[Any, ...]:
        """By family, address and prefix, then by every field: a total order."""
        n = self.network
        return (
            n.version,
            int(n.network_address),
            n.prefixlen,
            self.id,
            self.expires_at,
            self.scenarios,
            self.scope,
            self.confidence,
            self.reporters,
            self.origin,
            self.approved_at,
        )


def overlaps_any(net: Network, never: Sequence[Network | Address]) -> bool:
    """Whether ``net`` overlaps one of ``never`` (networks, or addresses as /32 and /128)."""
    for item in never:
        other = ipaddress.ip_network(item)
        if other.version == net.version and other.overlaps(net):
            return True
    return False


def etag(body: bytes) -> str:
    """A strong ETag for a rendered body: its SHA-256, base64url without padding, quoted."""
    digest = hashlib.sha256(body).digest()
    return '"' + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") + '"'


def check_listname(listname: str) -> None:
    """ValueError unless `listname` is 1 to 63 of A-Za-z0-9 . _ -."""
    if not isinstance(listname, str) or not _LISTNAME.match(listname):
        raise ValueError("a list name is 1 to 63 letters, digits, '.', '_' or '-'")


def listed(
    decisions: Iterable[Decision],
    *,
    family: int | None = None,
    never: Sequence[Network | Address] = (),
    now: datetime,
) -> list[Decision]:
    """The decisions a list holds, in its order: of `family`, active at `now`, and
    overlapping none of `never`."""
    kept = [
        d
        for d in decisions
        if (family is None or d.network.version == family)
        and (d.expires is None or d.expires > now)
        and not overlaps_any(d.network, never)
    ]
    kept.sort(key=Decision.sort_key)
    return kept


def render(
    fmt: str,
    decisions: Iterable[Decision],
    *,
    family: int | None = None,
    listname: str = "honeymesh",
    never: Sequence[Network | Address] = (),
    now: datetime,
) -> bytes:
    """The decisions active at ``now`` in ``fmt``; ValueError naming the allowed values."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose 4 or 6")
    check_listname(listname)
    kept = listed(decisions, family=family, never=never, now=now)
    if fmt == "plain":
        text = "".join(f"{_text(d.network)}\n" for d in kept)
    elif fmt == "csv":
        text = _csv(kept)
    elif fmt == "nft":
        text = _nft([d.network for d in kept])
    elif fmt == "ipset":
        text = _ipset([d.network for d in kept], family)
    elif fmt == "mikrotik":
        text = _mikrotik(_merged_entries(kept), listname, now, family)
    elif fmt == "f5":
        text = "".join(
            f"{n.network_address},{n.prefixlen},bl,{_f5_category(s, listname)}\n"
            for n, _, s in _merged_entries(kept)
        )
    else:  # juniper
        text = "".join(f"{n}\n" for n, _, _ in _merged_entries(kept))
    return text.encode("utf-8")


def _text(net: Network) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _one_line(text: str) -> str:
    return _LINE_BREAKING.sub(" ", text)


def _csv(decisions: list[Decision]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for d in decisions:
        row = [
            d.id,
            d.type,
            _text(d.network),
            d.scope,
            d.confidence,
            d.reporters,
            " ".join(d.scenarios),
            d.origin,
            d.approved_at,
            d.expires_at,
        ]
        # The csv module quotes commas and quotes; a line break inside a quoted
        # field is still valid CSV but splits a row for every line-based reader.
        writer.writerow([_one_line(cell) for cell in row])
    return out.getvalue()


def _collapsed(nets: list[Network], version: int) -> list[Network]:
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
    v4, v6 = _collapsed(nets, 4), _collapsed(nets, 6)
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


def _ipset(nets: list[Network], family: int | None) -> str:
    lines = ["# HoneyMesh active set. Load with: ipset restore -f FILE"]
    for name, inet, version in ((IPSET_V4, "inet", 4), (IPSET_V6, "inet6", 6)):
        if family is not None and version != family:
            continue
        members = [n for n in nets if n.version == version]
        # Fixed parameters: `create -exist` refuses a set made with other ones.
        maxelem = max(IPSET_MAXELEM, len(members))
        tmp = f"{name}-new"
        spec = f"hash:net family {inet} maxelem {maxelem}"
        lines += [
            f"create {name} {spec} -exist",
            f"create {tmp} {spec} -exist",
            f"flush {tmp}",
            *(f"add {tmp} {_text(n)} -exist" for n in members),
            f"swap {tmp} {name}",
            f"destroy {tmp}",
        ]
    return "\n".join(lines) + "\n"


Merged = tuple[Network, datetime | None, tuple[str, ...]]


def _merged_entries(decisions: list[Decision]) -> list[Merged]:
    """Each network once, in order: its latest expiry (None: none known) and every scenario."""
    out: list[Merged] = []
    for d in decisions:
        if out and out[-1][0] == d.network:
            net, expires, scenarios = out[-1]
            if expires is not None and (d.expires is None or d.expires > expires):
                expires = d.expires
            extra = tuple(s for s in d.scenarios if s not in scenarios)
            out[-1] = (net, expires, scenarios + extra)
        else:
            out.append((d.network, d.expires, tuple(dict.fromkeys(d.scenarios))))
    return out


def routeros_duration(seconds: int) -> str:
    """Whole seconds as RouterOS writes a time: ``1d2h3m4s`` (zero parts left out)."""
    if seconds <= 0:
        return "0s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n)


def routeros_quote(text: str) -> str:
    """A RouterOS double-quoted string that holds exactly ``text`` and nothing else."""
    out = ['"']
    for ch in text:
        if ch in _ROUTEROS_PLAIN:
            out.append(ch)
        else:  # \HH is a byte in any RouterOS string: no quote, $, [ or line end survives
            out.extend(f"\\{b:02X}" for b in ch.encode("utf-8"))
    out.append('"')
    return "".join(out)


def _mikrotik(entries: list[Merged], listname: str, now: datetime, family: int | None) -> str:
    name = routeros_quote(listname)
    v4 = sum(1 for n, _, _ in entries if n.version == 4)
    lines = [
        f"# HoneyMesh address-list {listname}: {v4} IPv4 and {len(entries) - v4} IPv6 entries.",
        "# Load with: /import file-name=FILE (replaces the list's entries).",
    ]
    for version, menu in ((4, "/ip firewall address-list"), (6, "/ipv6 firewall address-list")):
        if family is not None and version != family:
            continue
        lines.append(f"{menu} remove [find list={name}]")
        for net, expires, scenarios in entries:
            if net.version != version:
                continue
            address = _text(net) if version == 4 else str(net)
            words = [f"{menu} add list={name} address={address}"]
            if expires is not None:
                left = min(math.ceil((expires - now).total_seconds()), ROUTEROS_MAX_TIMEOUT)
                words.append(f"timeout={routeros_duration(left)}")
            if scenarios:
                words.append(f"comment={routeros_quote(','.join(scenarios))}")
            lines.append(" ".join(words))
    return "\n".join(lines) + "\n"


def _f5_category(scenarios: tuple[str, ...], listname: str) -> str:
    return (_F5_UNSAFE.sub("_", scenarios[0]) if scenarios else "") or listname
