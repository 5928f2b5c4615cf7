"""export.py: every format, and nft/ipset output that loads as it is.

The syntax is checked twice: by a small parser of the subset we write (always),
and by the real tools where they are installed (Debian `nftables`, `ipset`):
`nft -c -f FILE` (a dry run), and `ipset restore` inside a throwaway network
namespace (`unshare -n`), since ipset has no dry run and must not touch the
host's sets.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from honeymesh_client.export import exclude, render
from honeymesh_client.indicators import canonical

ENTRIES: list[dict[str, Any]] = [
    {"id": "a", "indicator": {"type": "ip", "value": "203.0.113.5"}, "scope": "mesh"},
    {"id": "b", "indicator": {"type": "cidr", "value": "203.0.113.0/24"}, "scope": "mesh"},
    {"id": "c", "indicator": {"type": "ip", "value": "2001:db8::1"}, "scope": "tenant"},
    {"id": "d", "indicator": {"type": "cidr", "value": "198.51.100.0/25"}, "scope": "mesh"},
    {"id": "e", "indicator": {"type": "cidr", "value": "2001:db8:1::/48"}, "scope": "mesh"},
    {
        "id": "f",
        "indicator": {"type": "ip", "value": "192.0.2.9"},
        "scope": "mesh",
        "scenarios": ["ssh/brute-force", "scan/syn"],
        "confidence": 90,
    },
]


def nft_elements(text: str) -> dict[str, list[str]]:
    """Parse the nft script we write: set name -> elements; assert its shape."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[:3] == [
        "table inet honeymesh",
        "delete table inet honeymesh",
        "table inet honeymesh {",
    ]
    assert lines[-1] == "}"
    sets: dict[str, list[str]] = {}
    current: str | None = None
    in_elements = False
    depth = 1
    for line in lines[3:-1]:
        if m := re.fullmatch(r"set (ipv4|ipv6) \{", line):
            current = m.group(1)
            sets[current] = []
            depth += 1
        elif line == "elements = {":
            in_elements = True
        elif in_elements and line == "}":
            in_elements = False
        elif in_elements:
            assert line.endswith(",")
            value = line[:-1]
            net = ipaddress.ip_network(value, strict=True)
            assert current is not None and net.version == (4 if current == "ipv4" else 6)
            sets[current].append(value)
        elif line == "}":
            depth -= 1
            current = None
        elif m := re.fullmatch(r"chain (input|forward) \{", line):
            depth += 1
        else:
            assert line in {
                "type ipv4_addr",
                "type ipv6_addr",
                "flags interval",
                "type filter hook input priority -10; policy accept;",
                "type filter hook forward priority -10; policy accept;",
                "ip saddr @ipv4 drop",
                "ip6 saddr @ipv6 drop",
            }, line
    assert depth == 1 and not in_elements
    assert set(sets) == {"ipv4", "ipv6"}
    for members in sets.values():  # an interval set refuses overlapping elements
        nets = [ipaddress.ip_network(m) for m in members]
        for i, a in enumerate(nets):
            for b in nets[i + 1 :]:
                assert not a.overlaps(b)
    return sets


def ipset_commands(text: str) -> dict[str, list[str]]:
    """Replay the `ipset restore` input on a model; the sets it leaves, by name."""
    live: dict[str, list[str]] = {}
    families: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        words = line.split()
        op, name = words[0], words[1]
        if op == "create":
            assert words[2] == "hash:net" and words[3] == "family" and words[-1] == "-exist"
            assert words[4] in ("inet", "inet6") and words[5] == "maxelem"
            live.setdefault(name, [])
            families[name] = words[4]
        elif op == "flush":
            live[name] = []
        elif op == "add":
            assert words[-1] == "-exist" and len(words) == 4
            net = ipaddress.ip_network(words[2], strict=True)
            assert net.version == (4 if families[name] == "inet" else 6)
            live[name].append(words[2])
        elif op == "swap":
            other = words[2]
            assert families[name] == families[other]
            live[name], live[other] = live[other], live[name]
        elif op == "destroy":
            del live[name]
        else:
            raise AssertionError(f"unexpected ipset command {line!r}")
    return live


def test_plain_is_one_per_line_sorted() -> None:
    assert render("plain", ENTRIES).splitlines() == [
        "192.0.2.9",
        "198.51.100.0/25",
        "203.0.113.0/24",
        "203.0.113.5",
        "2001:db8::1",
        "2001:db8:1::/48",
    ]


def test_json_and_csv() -> None:
    data = json.loads(render("json", ENTRIES))
    assert [d["id"] for d in data["decisions"]] == ["f", "d", "b", "a", "c", "e"]
    rows = render("csv", ENTRIES).splitlines()
    assert rows[0].startswith("id,type,value,scope,confidence")
    assert "f,ip,192.0.2.9,mesh,90,,ssh/brute-force scan/syn" in rows[1]
    assert len(rows) == 7


def test_render_is_deterministic_and_refuses_unknown_format() -> None:
    assert render("nft", ENTRIES) == render("nft", list(reversed(ENTRIES)))
    with pytest.raises(ValueError, match="unknown format"):
        render("xml", ENTRIES)


def test_nft_merges_overlaps_and_parses() -> None:
    sets = nft_elements(render("nft", ENTRIES))
    assert sets["ipv4"] == ["192.0.2.9", "198.51.100.0/25", "203.0.113.0/24"]
    assert sets["ipv6"] == ["2001:db8::1", "2001:db8:1::/48"]
    assert nft_elements(render("nft", [])) == {"ipv4": [], "ipv6": []}


def test_ipset_leaves_exactly_the_sets() -> None:
    live = ipset_commands(render("ipset", ENTRIES))
    assert live == {
        "honeymesh4": ["192.0.2.9", "198.51.100.0/25", "203.0.113.0/24", "203.0.113.5"],
        "honeymesh6": ["2001:db8::1", "2001:db8:1::/48"],
    }
    assert ipset_commands(render("ipset", [])) == {"honeymesh4": [], "honeymesh6": []}


def _tool(name: str) -> str:
    """The real tool, which deploy/debian-packages.txt makes `make test` require."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    package = {"nft": "nftables"}.get(name, name)
    assert found, f"install Debian's {package} package (deploy/debian-packages.txt)"
    return found


def test_nft_script_passes_the_real_tool(tmp_path: Path) -> None:
    for name, entries in (("full", ENTRIES), ("empty", [])):
        path = tmp_path / f"{name}.nft"
        path.write_text(render("nft", entries))
        nft_elements(path.read_text())  # the parser, and the real tool in a private netns
        done = subprocess.run(
            ["unshare", "-n", _tool("nft"), "-c", "-f", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr


def test_ipset_input_loads_twice_in_a_private_namespace(tmp_path: Path) -> None:
    full, empty = tmp_path / "full.ipset", tmp_path / "empty.ipset"
    full.write_text(render("ipset", ENTRIES))
    empty.write_text(render("ipset", []))
    ipset_commands(full.read_text())  # the model, and the real tool in a private netns
    ipset = _tool("ipset")
    script = (
        f"set -e; {ipset} restore -f {full}; {ipset} restore -f {full}; "
        f"{ipset} list honeymesh4 | grep 'Number of entries'; "
        f"{ipset} restore -f {empty}; {ipset} list -n"
    )
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Number", "of", "entries:", "4", "honeymesh4", "honeymesh6"]


@pytest.mark.parametrize(
    ("protected", "dropped"),
    [
        (["203.0.113.77"], {"b"}),
        (["203.0.113.5"], {"a", "b"}),
        (["2001:db8:1::99"], {"e"}),
        (["192.0.2.10"], set()),
    ],
)
def test_exclude_drops_entries_covering_protected_addresses(
    protected: list[str], dropped: set[str]
) -> None:
    kept, gone = exclude(ENTRIES, [ipaddress.ip_address(p) for p in protected])
    assert {e["id"] for e in gone} == dropped
    assert len(kept) + len(gone) == len(ENTRIES)


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("ip", "2001:DB8:0:0:0:0:0:1", ("ip", "2001:db8::1")),
        ("ip", "::ffff:203.0.113.1", ("ip", "203.0.113.1")),
        ("cidr", "203.0.113.7/32", ("ip", "203.0.113.7")),
        ("cidr", "::ffff:203.0.113.0/120", ("cidr", "203.0.113.0/24")),
        ("cidr", "2001:db8::/32", ("cidr", "2001:db8::/32")),
    ],
)
def test_canonical_indicators(type_: str, value: str, expected: tuple[str, str]) -> None:
    found = canonical(type_, value)
    assert (found.type, found.value) == expected


@pytest.mark.parametrize(
    ("type_", "value"),
    [("ip", "203.0.113"), ("cidr", "203.0.113.1/24"), ("ip", "fe80::1%eth0"), ("dns", "x")],
)
def test_canonical_refuses(type_: str, value: str) -> None:
    with pytest.raises(ValueError):
        canonical(type_, value)
