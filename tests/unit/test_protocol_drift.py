"""The node and the hub read indicators and times one way (PROTOCOL.md sections 3, 6).

Whatever the hub refuses the node refuses too, before signing, and both agree on
the canonical form of whatever they accept: a node that canonicalises differently
signs a payload the hub then refuses, or two nodes name one address two ways.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honeymesh_client.feedstate import _expired
from honeymesh_client.indicators import canonical
from honeymesh_hub.addresses import parse_indicator
from honeymesh_hub.errors import ValidationFailed
from honeymesh_hub.services.admin import parse_time
from honeymesh_hub.validation import validate_signal

from . import test_addresses as hub_cases
from .test_validation import NODE, NOW, _body


def _cases(test: object) -> list[tuple[str, ...]]:
    """The parametrize cases of a test of the hub's addresses."""
    marks = getattr(test, "pytestmark", [])
    return list(next(m.args[1] for m in marks if m.name == "parametrize"))


_REFUSED = _cases(hub_cases.test_refused)
_CANONICAL = _cases(hub_cases.test_canonical)

REFUSED = [(t, v) for t, v, _ in _REFUSED] + [
    ("cidr", "10.0.0.0/08"),
    ("cidr", "2001:db8::/032"),
    ("cidr", "::ffff:10.0.0.0/0104"),
]


@pytest.mark.parametrize(
    ("type_", "value"),
    REFUSED,
)
def test_client_refuses_what_the_hub_refuses(type_: str, value: str) -> None:
    with pytest.raises(ValueError):
        parse_indicator(type_, value)
    with pytest.raises(ValueError):
        canonical(type_, value)


@pytest.mark.parametrize(("type_", "value", "expected"), _CANONICAL)
def test_client_and_hub_agree_on_the_canonical_form(
    type_: str, value: str, expected: tuple[str, str]
) -> None:
    hub = parse_indicator(type_, value)
    node = canonical(type_, value)
    assert (hub.type, hub.value) == (node.type, node.value) == expected


# The hub's RFC 3339 readers: signals accept what RFC 3339 5.6 allows, the operator
# API a narrower set; a year-1 time with an offset falls out of datetime's range.


@pytest.mark.parametrize(
    "text",
    [
        "2031-01-02t03:04:05z",
        "2031-06-30T23:59:60Z",
        "2031-01-02T03:04:05+01:00",
    ],
)
def test_operator_times_read_like_signal_times(text: str) -> None:
    assert parse_time(text, "/expires_at") is not None


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_out_of_range_is_a_refusal(text: str) -> None:
    raw = json.dumps(_body(observed_at=text)).encode()
    result = validate_signal(raw, caller_node_id=NODE, now=NOW)
    assert getattr(result, "pointer", None) == "/observed_at"


def test_the_node_reads_a_feed_time_like_the_hub() -> None:
    # A naive time is not RFC 3339; the node must not guess its zone.
    assert not _expired({"expires_at": "2000-01-01T00:00:00"}, 10**10)


def test_one_indicator_parser() -> None:
    from honeymesh_client.protocol import indicators as shared
    from honeymesh_hub import addresses

    assert addresses.parse_indicator is shared.parse_indicator
    assert addresses.Indicator is shared.Indicator
    assert canonical("ip", "::ffff:192.0.2.1") == addresses.parse_indicator("ip", "192.0.2.1")


def test_one_rfc3339_reader() -> None:
    from honeymesh_client.protocol.times import RFC3339_DATE_TIME
    from honeymesh_hub import shapes

    assert shapes.RFC3339 is RFC3339_DATE_TIME
    for text in ("2031-02-30T00:00:00Z", "2031-01-02T03:04:05", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValidationFailed):
            parse_time(text, "/expires_at")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ((), ""),
        (("a/b", "~"), "/a~1b/~0"),
        (("~1",), "/~01"),
        (("signatures", "0", ""), "/signatures/0/"),
    ],
)
def test_one_rfc6901_escaper(names: tuple[str, ...], expected: str) -> None:
    from honeymesh_client.protocol.pointers import escape_token, pointer

    assert pointer(*names) == expected
    assert escape_token("~/") == "~0~1"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("0" * 64, True),
        ("ab" * 32, True),
        ("AB" * 32, False),
        ("a" * 63, False),
        ("a" * 64 + "\n", False),
    ],
)
def test_one_keyid_check(text: str, ok: bool) -> None:
    from honeymesh_client.protocol.keys import is_keyid

    assert is_keyid(text) is ok


ROOT = Path(__file__).resolve().parents[2]
# Each of these is the shared protocol's, in one file; a second copy is drift.
ONLY_IN = {
    "fromisoformat(": "client/honeymesh_client/protocol/times.py",
    'replace("~", "~0")': "client/honeymesh_client/protocol/pointers.py",
    "[0-9a-f]{64}": None,
    '"0123456789abcdef"': "client/honeymesh_client/protocol/keys.py",
}


@pytest.mark.parametrize("needle", sorted(ONLY_IN))
def test_no_second_copy(needle: str) -> None:
    found = sorted(
        str(path.relative_to(ROOT))
        for top in ("client", "server")
        for path in (ROOT / top).rglob("*.py")
        if needle in path.read_text("utf-8")
    )
    assert found == [p for p in [ONLY_IN[needle]] if p]
