"""I-JSON (RFC 7493): each rule refused, and what is valid still parses."""

from __future__ import annotations

import pytest

from honeymesh_client.protocol.errors import ProtocolError
from honeymesh_client.protocol.ijson import dumps, loads


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"{",
        b"[1,]",
        b"{'a': 1}",
        b"\xef\xbb\xbf{}",  # BOM
        b'"\xff"',  # not UTF-8
        b'"\xc0\xaf"',  # overlong
        b'"\xed\xa0\x80"',  # an encoded surrogate
        b"\xfe\xff\x00{\x00}",  # UTF-16
        b'{"a":1,"a":2}',
        b'{"a":1,"b":{"c":1,"c":1}}',
        b'[{"x":0,"y":0,"x":0}]',
        b'"\\ud800"',
        b'"\\uDFFF"',
        b'["ok","a\\udc00b"]',
        b'{"\\ud800":1}',
        b'{"k":"\\ud83d"}',
        b'"\\ude00\\ud83d"',  # a pair in the wrong order
        b"NaN",
        b"[Infinity]",
        b'{"a":-Infinity}',
        b"123456789012345678901",  # 21 characters
        b"-12345678901234567890",  # 21 with the sign
        b"1.0000000000000000001",
        b"1e400",
        b"-1e400",
        b"[1, 2] x",
        b'"a\x01"',  # raw control character
        b'"a\\u0000b"',  # U+0000 (PROTOCOL.md 3 r2)
        b'{"\\u0000":1}',
        b'[["x", {"k": "\\u0000"}]]',
        b'"\x00"',
        nested(33),
        nested_objects(33),
        b'{"a":[{"b":' * 11 + b"0" + b"}]" * 11 + b"}",  # 34 deep, mixed
        b"[" * (1024 * 1024),
        b"{" * (1024 * 1024),
        b'{"a":' * (512 * 1024),
    ],
)
def test_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        loads(data)
    assert info.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{}", {}),
        (b"[]", []),
        (b'"\\ud83d\\ude00"', "\U0001f600"),
        ('"\U0001f600"'.encode(), "\U0001f600"),
        (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, not a surrogate
        (b'"\\\\u0000"', "\\u0000"),  # an escaped backslash, not U+0000
        (b'"\\u00e9"', "\u00e9"),
        (b"12345678901234567890", 12345678901234567890),
        (b"-1234567890123456789", -1234567890123456789),
        (b"1.5e10", 1.5e10),
        (b"-0", 0),
        (b"1e308", 1e308),
        (b' {"a": [1, true, false, null]} ', {"a": [1, True, False, None]}),
        (b'{"a":1,"b":{"a":1}}', {"a": 1, "b": {"a": 1}}),
        (b'[{"a":1},{"a":1}]', [{"a": 1}, {"a": 1}]),
    ],
)
def test_accepted(data: bytes, expected: object) -> None:
    assert loads(data) == expected


def test_depth_32_accepted() -> None:
    assert loads(nested(32)) is not None
    assert loads(nested_objects(32)) is not None


def test_depth_33_refused_with_reason() -> None:
    with pytest.raises(ProtocolError, match="deeper than 32"):
        loads(nested(33))


def test_wide_but_shallow_accepted() -> None:
    envelope = b'{"payloadType":"t","payload":"QQ==","signatures":[{"keyid":"k","sig":"QQ=="}]}'
    body = b'{"envelopes":[' + b",".join([envelope] * 500) + b"]}"
    value = loads(body)
    assert isinstance(value, dict)
    assert len(value["envelopes"]) == 500


def test_lone_surrogate_found_deep_in_a_batch() -> None:
    body = b'{"envelopes":[' + b'{"a":["x"]},' * 50 + b'{"a":["\\udbff"]}]}'
    with pytest.raises(ProtocolError, match="lone surrogate"):
        loads(body)


def test_dumps_is_compact_utf8() -> None:
    assert dumps({"a": [1, "\u00e9"]}) == '{"a":[1,"\u00e9"]}'.encode()
    with pytest.raises(ValueError):
        dumps(float("nan"))
    value = {"k": ["v", 1, None, {"n": -2.5}]}
    assert loads(dumps(value)) == value
