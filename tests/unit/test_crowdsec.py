"""The CrowdSec rendering (PROTOCOL.md 13.1): decisions, Go durations, filters, lookups."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from honeymesh_hub.crowdsec import (
    BadLookup,
    Filters,
    Lookup,
    accepts_gzip,
    decision,
    go_duration,
    lookup_of,
    stream_parts,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m0s"),
        (3599, "59m59s"),
        (3600, "1h0m0s"),
        (14398, "3h59m58s"),
        (30 * 86400, "720h0m0s"),
    ],
)
def test_go_duration(seconds: int, text: str) -> None:
    assert go_duration(seconds) == text


def test_a_decision_is_exactly_as_crowdsec_writes_it() -> None:
    expires = NOW.replace(microsecond=0) + timedelta(hours=4) - timedelta(seconds=1)
    made = decision(
        crowdsec_id=7,
        uuid="u",
        indicator_type="cidr",
        value="198.51.100.0/24",
        scenarios=["ssh-bf", "http-probe"],
        expires_at=expires,
        now=NOW,
    )
    assert made == {
        "id": 7,
        "uuid": "u",
        "origin": "honeymesh",
        "type": "ban",
        "scope": "Range",
        "value": "198.51.100.0/24",
        "duration": "3h59m58s",  # 3h59m58.4s: whole seconds, rounded down
        "until": "2026-01-02T07:04:04Z",
        "scenario": "ssh-bf,http-probe",
        "simulated": False,
    }
    gone = decision(
        crowdsec_id=7,
        uuid="u",
        indicator_type="ip",
        value="203.0.113.7",
        scenarios=[],
        expires_at=expires,
        now=NOW,
        deleted=True,
    )
    assert (gone["duration"], gone["scope"]) == ("0s", "Ip")


def test_filters_default_and_words() -> None:
    default = Filters.parse({})
    assert default.types == {"ip", "cidr"}
    assert default.admits("ip", ["ssh-bf"])
    only_ip = Filters.parse({"scopes": "IP"})
    assert only_ip.admits("ip", []) and not only_ip.admits("cidr", [])
    assert Filters.parse({"scopes": "country"}).admits_nothing
    assert Filters.parse({"origins": "crowdsec,cscli"}).admits_nothing
    assert not Filters.parse({"origins": "crowdsec,honeymesh"}).admits_nothing
    containing = Filters.parse({"scenarios_containing": "SSH,ftp"})
    assert containing.admits("ip", ["crowdsecurity/ssh-bf"])
    assert not containing.admits("ip", ["http-probe"])
    not_containing = Filters.parse({"scenarios_not_containing": "probe, scan"})
    assert not not_containing.admits("ip", ["http-PROBE"])
    assert not_containing.admits("ip", ["ssh-bf"])


def test_lookups() -> None:
    assert lookup_of({"ip": "2001:DB8::1"}) == Lookup("2001:db8::1", True)
    assert lookup_of({"range": "198.51.100.7/24"}) == Lookup("198.51.100.0/24", True)
    assert lookup_of({"range": "10.0.0.0/8", "contains": "false"}) == Lookup("10.0.0.0/8", False)
    assert lookup_of({"scope": "ip", "value": "203.0.113.7"}) == Lookup("203.0.113.7", True)
    assert lookup_of({"scope": "range", "value": "10.0.0.0/8"}).network == "10.0.0.0/8"
    assert lookup_of({"scope": "country", "value": "FR"}).none
    assert lookup_of({"type": "captcha", "ip": "203.0.113.7"}).none
    assert lookup_of({}) == Lookup(None, True)
    with pytest.raises(BadLookup):
        lookup_of({"ip": "not-an-ip"})
    with pytest.raises(BadLookup):
        lookup_of({"range": "10.0.0.0/33"})


def test_stream_parts_make_one_document() -> None:
    body = b"".join(stream_parts([{"a": 1}, {"b": 2}], []))
    assert json.loads(body) == {"new": [{"a": 1}, {"b": 2}], "deleted": []}
    assert json.loads(b"".join(stream_parts([], []))) == {"new": [], "deleted": []}


@pytest.mark.parametrize(
    ("header", "admitted"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate", False),
        ("", False),
        ("gzip;q=0", False),
        ("*", True),
        ("*;q=0.5, gzip;q=0", False),
        ("identity", False),
    ],
)
def test_accepts_gzip(header: str, admitted: bool) -> None:
    assert accepts_gzip(header) is admitted
