"""protocol/blocklists.py: every format's exact text, filters, order, escaping, ETag.

nft and ipset output is checked by the parser and model of test_client_export.py
(always) and by the real tools where they are installed, as there.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import random
import re
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from honeymesh_client.protocol.blocklists import (
    FORMATS,
    Decision,
    etag,
    render,
    routeros_duration,
    routeros_quote,
)
from honeymesh_client.protocol.indicators import Address, Network

from .test_client_export import _tool, ipset_commands, nft_elements

NOW = datetime(2026, 12, 1, tzinfo=UTC)

SET = [
    Decision("ip", "203.0.113.5", ("ssh/brute-force",), "2026-12-02T01:02:04Z", id="a"),
    Decision("cidr", "203.0.113.0/24", ("scan/syn",), "2026-12-08T00:00:00Z", id="b"),
    Decision(
        "ip",
        "2001:DB8::1",
        ("http/probe", "ssh/brute-force"),
        "2026-12-01T00:00:00.5Z",
        id="c",
        scope="tenant",
        confidence="90",
        reporters="3",
        origin="auto",
        approved_at="2026-11-30T12:00:00Z",
    ),
    Decision("cidr", "2001:db8:1::/48", id="d"),  # no expiry known
    Decision("cidr", "192.0.2.7/32", (), "2026-12-01T01:00:00Z", id="e"),  # an ip
    Decision("cidr", "2001:db8::2/128", ("x/y",), "2027-12-01T00:00:00Z", id="f"),
    Decision("ip", "198.51.100.1", ("old/one",), "2026-11-30T00:00:00Z", id="x"),  # expired
]


def out(
    fmt: str,
    decisions: list[Decision] = SET,
    *,
    family: int | None = None,
    listname: str = "honeymesh",
    never: Sequence[Network | Address] = (),
) -> str:
    body = render(fmt, decisions, family=family, listname=listname, never=never, now=NOW)
    return body.decode("utf-8")


def test_decisions_are_canonical() -> None:
    d = Decision("cidr", "::ffff:192.0.2.7/128")
    assert (d.type, d.value, str(d.network)) == ("ip", "192.0.2.7", "192.0.2.7/32")
    assert Decision("ip", "2001:DB8::1") == Decision("ip", "2001:db8::1")
    with pytest.raises(ValueError):
        Decision("cidr", "203.0.113.1/24")
    assert Decision.from_entry({"indicator": {"type": "dns", "value": "x"}}) is None
    assert Decision.from_entry({"id": 1}) is None
    entry = {
        "id": "i",
        "indicator": {"type": "ip", "value": "192.0.2.1"},
        "scenarios": ["a/b"],
        "confidence": 90,
        "reporters": None,
        "expires_at": "not a time",
    }
    d2 = Decision.from_entry(entry)
    assert d2 is not None and d2.confidence == "90" and d2.reporters == ""
    assert d2.expires is None  # never dropped on a guess


def test_plain() -> None:
    assert out("plain") == (
        "192.0.2.7\n203.0.113.0/24\n203.0.113.5\n2001:db8::1\n2001:db8::2\n2001:db8:1::/48\n"
    )


def test_juniper_writes_every_prefix() -> None:
    assert out("juniper") == (
        "192.0.2.7/32\n203.0.113.0/24\n203.0.113.5/32\n"
        "2001:db8::1/128\n2001:db8::2/128\n2001:db8:1::/48\n"
    )


def test_f5() -> None:
    assert out("f5") == (
        "192.0.2.7,32,bl,honeymesh\n"
        "203.0.113.0,24,bl,scan_syn\n"
        "203.0.113.5,32,bl,ssh_brute-force\n"
        "2001:db8::1,128,bl,http_probe\n"
        "2001:db8::2,128,bl,x_y\n"
        "2001:db8:1::,48,bl,honeymesh\n"
    )
    assert out("f5", listname="hm").splitlines()[0] == "192.0.2.7,32,bl,hm"


def test_csv() -> None:
    assert out("csv") == (
        "id,type,value,scope,confidence,reporters,scenarios,origin,approved_at,expires_at\n"
        "e,ip,192.0.2.7,,,,,,,2026-12-01T01:00:00Z\n"
        "b,cidr,203.0.113.0/24,,,,scan/syn,,,2026-12-08T00:00:00Z\n"
        "a,ip,203.0.113.5,,,,ssh/brute-force,,,2026-12-02T01:02:04Z\n"
        "c,ip,2001:db8::1,tenant,90,3,http/probe ssh/brute-force,auto,"
        "2026-11-30T12:00:00Z,2026-12-01T00:00:00.5Z\n"
        "f,ip,2001:db8::2,,,,x/y,,,2027-12-01T00:00:00Z\n"
        "d,cidr,2001:db8:1::/48,,,,,,,\n"
    )


def test_mikrotik() -> None:
    assert out("mikrotik") == (
        "# HoneyMesh address-list honeymesh: 3 IPv4 and 3 IPv6 entries.\n"
        "# Load with: /import file-name=FILE (replaces the list's entries).\n"
        '/ip firewall address-list remove [find list="honeymesh"]\n'
        '/ip firewall address-list add list="honeymesh" address=192.0.2.7 timeout=1h\n'
        '/ip firewall address-list add list="honeymesh" address=203.0.113.0/24 timeout=7d'
        ' comment="scan/syn"\n'
        '/ip firewall address-list add list="honeymesh" address=203.0.113.5'
        ' timeout=1d1h2m4s comment="ssh/brute-force"\n'
        '/ipv6 firewall address-list remove [find list="honeymesh"]\n'
        '/ipv6 firewall address-list add list="honeymesh" address=2001:db8::1/128'
        ' timeout=1s comment="http/probe,ssh/brute-force"\n'
        '/ipv6 firewall address-list add list="honeymesh" address=2001:db8::2/128'
        ' timeout=248d13h13m56s comment="x/y"\n'  # RouterOS's longest timeout
        '/ipv6 firewall address-list add list="honeymesh" address=2001:db8:1::/48\n'
    )
    assert '[find list="blocked.v2"]' in out("mikrotik", listname="blocked.v2")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1, "1s"), (60, "1m"), (61, "1m1s"), (3600, "1h"), (86400, "1d"), (93784, "1d2h3m4s")],
)
def test_routeros_duration(seconds: int, text: str) -> None:
    assert routeros_duration(seconds) == text


def test_nft() -> None:
    assert out("nft") == (
        "#!/usr/sbin/nft -f\n"
        "# HoneyMesh active set: 2 IPv4 and 3 IPv6 ranges.\n"
        "# Load with: nft -f FILE (replaces the table in one transaction).\n"
        "table inet honeymesh\n"
        "delete table inet honeymesh\n"
        "table inet honeymesh {\n"
        "\tset ipv4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
        "\t\telements = {\n\t\t\t192.0.2.7,\n\t\t\t203.0.113.0/24,\n\t\t}\n\t}\n"
        "\tset ipv6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n"
        "\t\telements = {\n\t\t\t2001:db8::1,\n\t\t\t2001:db8::2,\n\t\t\t2001:db8:1::/48,\n"
        "\t\t}\n\t}\n"
        "\tchain input {\n\t\ttype filter hook input priority -10; policy accept;\n"
        "\t\tip saddr @ipv4 drop\n\t\tip6 saddr @ipv6 drop\n\t}\n"
        "\tchain forward {\n\t\ttype filter hook forward priority -10; policy accept;\n"
        "\t\tip saddr @ipv4 drop\n\t\tip6 saddr @ipv6 drop\n\t}\n"
        "}\n"
    )


def test_ipset() -> None:
    assert out("ipset") == (
        "# HoneyMesh active set. Load with: ipset restore -f FILE\n"
        "create honeymesh4 hash:net family inet maxelem 1048576 -exist\n"
        "create honeymesh4-new hash:net family inet maxelem 1048576 -exist\n"
        "flush honeymesh4-new\n"
        "add honeymesh4-new 192.0.2.7 -exist\n"
        "add honeymesh4-new 203.0.113.0/24 -exist\n"
        "add honeymesh4-new 203.0.113.5 -exist\n"
        "swap honeymesh4-new honeymesh4\n"
        "destroy honeymesh4-new\n"
        "create honeymesh6 hash:net family inet6 maxelem 1048576 -exist\n"
        "create honeymesh6-new hash:net family inet6 maxelem 1048576 -exist\n"
        "flush honeymesh6-new\n"
        "add honeymesh6-new 2001:db8::1 -exist\n"
        "add honeymesh6-new 2001:db8::2 -exist\n"
        "add honeymesh6-new 2001:db8:1::/48 -exist\n"
        "swap honeymesh6-new honeymesh6\n"
        "destroy honeymesh6-new\n"
    )


EMPTY = {
    "plain": "",
    "juniper": "",
    "f5": "",
    "csv": "id,type,value,scope,confidence,reporters,scenarios,origin,approved_at,expires_at\n",
    "mikrotik": (
        "# HoneyMesh address-list honeymesh: 0 IPv4 and 0 IPv6 entries.\n"
        "# Load with: /import file-name=FILE (replaces the list's entries).\n"
        '/ip firewall address-list remove [find list="honeymesh"]\n'
        '/ipv6 firewall address-list remove [find list="honeymesh"]\n'
    ),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_input(fmt: str) -> None:
    text = out(fmt, [])
    if fmt in EMPTY:
        assert text == EMPTY[fmt]
    elif fmt == "nft":
        assert nft_elements(text) == {"ipv4": [], "ipv6": []}
    else:
        assert ipset_commands(text) == {"honeymesh4": [], "honeymesh6": []}
    only_expired = [d for d in SET if d.id == "x"]
    assert out(fmt, only_expired) == text


@pytest.mark.parametrize("fmt", FORMATS)
def test_order_never_changes_the_bytes_or_the_etag(fmt: str) -> None:
    body = render(fmt, SET, now=NOW)
    shuffled = list(SET)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert render(fmt, shuffled, now=NOW) == body
    assert etag(render(fmt, shuffled, now=NOW)) == etag(body)


def test_etag_is_a_strong_quoted_sha256() -> None:
    tag = etag(b"192.0.2.7\n")
    assert re.fullmatch(r'"[A-Za-z0-9_-]{43}"', tag)
    assert etag(b"") != tag and etag(b"192.0.2.7\n") == tag


@pytest.mark.parametrize("fmt", FORMATS)
def test_family_keeps_one(fmt: str) -> None:
    v4, v6 = out(fmt, family=4), out(fmt, family=6)
    assert "2001:db8" not in v4 and "203.0.113." in v4
    assert "203.0.113" not in v6 and "2001:db8::1" in v6
    if fmt in ("plain", "csv", "f5", "juniper"):
        assert v4 == out(fmt, [d for d in SET if d.network.version == 4])


def test_family_shapes() -> None:
    assert "/ipv6" not in out("mikrotik", family=4)
    assert "/ip firewall" not in out("mikrotik", family=6)
    assert ipset_commands(out("ipset", family=6)) == {
        "honeymesh6": ["2001:db8::1", "2001:db8::2", "2001:db8:1::/48"]
    }
    assert nft_elements(out("nft", family=4)) == {
        "ipv4": ["192.0.2.7", "203.0.113.0/24"],
        "ipv6": [],  # the chains name both sets: the other one stays, empty
    }


def test_unknown_format_family_or_listname() -> None:
    with pytest.raises(ValueError, match="plain, csv, nft, ipset, mikrotik, f5, juniper"):
        out("xml")
    with pytest.raises(ValueError, match="choose 4 or 6"):
        out("plain", family=5)
    for bad in ("", "a b", 'x"y', "x" * 64, "é"):
        with pytest.raises(ValueError, match="list name"):
            out("mikrotik", listname=bad)


@pytest.mark.parametrize(
    ("never", "gone"),
    [
        (["203.0.113.128/25"], {"203.0.113.0/24"}),  # overlap, not only containment
        (["203.0.113.5"], {"203.0.113.0/24", "203.0.113.5"}),
        (["203.0.0.0/16"], {"203.0.113.0/24", "203.0.113.5"}),
        (["2001:db8::/32"], {"2001:db8::1", "2001:db8::2", "2001:db8:1::/48"}),
        (["2001:db8:1::99"], {"2001:db8:1::/48"}),
        (["192.0.2.8", "::ffff:0:0/96"], set()),
    ],
)
def test_never_lists_the_hubs_own_addresses(never: list[str], gone: set[str]) -> None:
    nets = [ipaddress.ip_network(n) for n in never]
    listed = set(out("plain").split())
    assert set(out("plain", never=nets).split()) == listed - gone
    if all("/" not in n for n in never):  # addresses are accepted too
        addrs = [ipaddress.ip_address(n) for n in never]
        assert set(out("plain", never=addrs).split()) == listed - gone
    for fmt in FORMATS:
        text = out(fmt, never=nets)
        for value in gone:
            assert re.search(rf"(?<![0-9a-f:.]){re.escape(value)}(?![0-9a-f:./])", text) is None


def test_one_network_listed_once_where_a_firewall_refuses_duplicates() -> None:
    twice = [
        Decision("ip", "192.0.2.1", ("a/b",), "2026-12-01T01:00:00Z", id="1", scope="tenant"),
        Decision("ip", "192.0.2.1", ("c/d", "a/b"), "2026-12-02T00:00:00Z", id="2"),
    ]
    assert out("mikrotik", twice).splitlines()[3] == (
        '/ip firewall address-list add list="honeymesh" address=192.0.2.1 timeout=1d'
        ' comment="a/b,c/d"'
    )
    assert out("juniper", twice) == "192.0.2.1/32\n"
    assert out("f5", twice) == "192.0.2.1,32,bl,a_b\n"
    assert out("plain", twice) == "192.0.2.1\n192.0.2.1\n"  # the node's historical form
    forever = [*twice, Decision("ip", "192.0.2.1", id="3")]
    assert "timeout" not in out("mikrotik", forever).splitlines()[3]


HOSTILE = (
    'x" address=0.0.0.0/0 comment="',
    "a\nb",
    "c\r\nd",
    "$list",
    "$[/system reset-configuration]",
    "[/file remove [find]]",
    "back\\slash",
    "semi;colon ?help",
    "comma,quote\"'",
    "naïve-é-ü",
    "\u2028line\u2029sep",
    "tab\tnul\x00del\x7f",
)


def _routeros_unquote(line: str) -> tuple[str, str]:
    """(before the comment, the comment's text); the quoted string ends the line."""
    head, sep, rest = line.partition(' comment="')
    assert sep and rest.endswith('"')
    body = rest[:-1]
    assert '"' not in body and "$" not in body and "[" not in body
    assert re.fullmatch(r"(?:[A-Za-z0-9 ._/,:=@+-]|\\[0-9A-F]{2})*", body), body
    raw = re.sub(rb"\\([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), body.encode())
    return head, raw.decode("utf-8")


def test_mikrotik_comments_cannot_break_out() -> None:
    for text in HOSTILE:
        d = Decision("ip", "192.0.2.1", (text, "ok/x"), "2026-12-01T00:01:00Z")
        lines = out("mikrotik", [d]).splitlines()
        assert len(lines) == 5 and lines[4].startswith("/ipv6 firewall address-list remove")
        head, comment = _routeros_unquote(lines[3])
        assert head == '/ip firewall address-list add list="honeymesh" address=192.0.2.1 timeout=1m'
        assert comment == f"{text},ok/x"
    assert routeros_quote('"$\\') == '"\\22\\24\\5C"'


def test_csv_fields_cannot_break_out_of_their_row() -> None:
    decisions = [
        Decision("ip", f"192.0.2.{i}", (text, "ok/x"), id=f"i{i}", origin=text)
        for i, text in enumerate(HOSTILE, start=1)
    ]
    text = out("csv", decisions)
    lines = text.splitlines()
    assert len(lines) == len(HOSTILE) + 1
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == len(lines) and all(len(r) == 10 for r in rows)
    by_id = {r[0]: r for r in rows[1:]}
    for i, hostile in enumerate(HOSTILE, start=1):
        row = by_id[f"i{i}"]
        flat = re.sub("[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", hostile)
        assert row[2] == f"192.0.2.{i}"
        assert row[6] == f"{flat} ok/x" and row[7] == flat


def test_other_line_formats_carry_no_scenario_text() -> None:
    d = Decision("ip", "192.0.2.1", (HOSTILE[0], "a\nb"))
    assert out("plain", [d]) == "192.0.2.1\n"
    assert out("juniper", [d]) == "192.0.2.1/32\n"
    assert out("f5", [d]) == "192.0.2.1,32,bl,x__address_0.0.0.0_0_comment__\n"


def test_nft_and_ipset_pass_the_real_tools(tmp_path: Path) -> None:
    for family in (None, 4, 6):
        nft = tmp_path / f"{family}.nft"
        nft.write_bytes(render("nft", SET, family=family, now=NOW))
        nft_elements(nft.read_text())
        done = subprocess.run(
            ["unshare", "-n", _tool("nft"), "-c", "-f", str(nft)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        ipset = tmp_path / f"{family}.ipset"
        ipset.write_bytes(render("ipset", SET, family=family, now=NOW))
        ipset_commands(ipset.read_text())
        tool = _tool("ipset")
        script = f"set -e; {tool} restore -f {ipset}; {tool} restore -f {ipset}"
        done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
