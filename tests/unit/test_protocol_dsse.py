"""DSSE envelopes: PAE, build, parse (every malformed case) and verify."""

from __future__ import annotations

import base64
import copy

import pytest

from honeymesh_client.protocol.dsse import (
    SIGNAL_PAYLOAD_TYPE,
    Envelope,
    build_envelope,
    pae,
    parse_envelope,
    verify_envelope,
)
from honeymesh_client.protocol.errors import ProtocolError
from honeymesh_client.protocol.keys import NodeKey

KEY = NodeKey.from_private_bytes(bytes(range(32)))
OTHER = NodeKey.from_private_bytes(bytes(range(1, 33)))
PAYLOAD = b'{"v":1,"id":"5f0c","note":"\xc3\xa9"}'


def test_pae_spec_vector() -> None:
    # DSSE protocol.md, "Test Vectors".
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t\u00e9", b"\xc3\xa9") == b"DSSEv1 3 t\xc3\xa9 2 \xc3\xa9"
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_round_trip() -> None:
    obj = build_envelope(KEY, PAYLOAD)
    assert obj["payloadType"] == SIGNAL_PAYLOAD_TYPE
    assert obj["payload"] == base64.b64encode(PAYLOAD).decode()
    env = parse_envelope(obj)
    assert env == Envelope(SIGNAL_PAYLOAD_TYPE, PAYLOAD, KEY.keyid, env.sig)
    assert verify_envelope(env, KEY.public_raw) == PAYLOAD


def test_url_safe_and_unpadded_base64_accepted() -> None:
    payload = b"\xfb\xff\xfe" * 10 + b"x"
    obj = build_envelope(KEY, payload)
    sig = base64.b64decode(obj["signatures"][0]["sig"])  # type: ignore[index]
    obj["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    obj["signatures"] = [{"keyid": KEY.keyid, "sig": base64.urlsafe_b64encode(sig).decode()}]
    assert "-" in obj["payload"] or "_" in obj["payload"]  # type: ignore[operator]
    assert verify_envelope(parse_envelope(obj), KEY.public_raw) == payload


def _good() -> dict[str, object]:
    return build_envelope(KEY, PAYLOAD)


def _with(path: tuple[str | int, ...], value: object) -> dict[str, object]:
    obj = copy.deepcopy(_good())
    target: object = obj
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    if value is _DELETE:
        del target[path[-1]]  # type: ignore[attr-defined]
    else:
        target[path[-1]] = value  # type: ignore[index]
    return obj


_DELETE = object()
BIG = base64.b64encode(b"x" * 8193).decode()


@pytest.mark.parametrize(
    ("obj", "pointer"),
    [
        ([], ""),
        ("envelope", ""),
        (None, ""),
        (_with(("extra",), 1), "/extra"),
        (_with(("a/b~c",), 1), "/a~1b~0c"),
        (_with(("payloadType",), _DELETE), "/payloadType"),
        (_with(("payloadType",), 1), "/payloadType"),
        (_with(("payloadType",), "application/json"), "/payloadType"),
        (_with(("payloadType",), "application/vnd.in-toto+json"), "/payloadType"),
        (_with(("payload",), _DELETE), "/payload"),
        (_with(("payload",), None), "/payload"),
        (_with(("payload",), ["a"]), "/payload"),
        (_with(("payload",), "not base64!"), "/payload"),
        (_with(("payload",), "aGVsbG8=\n"), "/payload"),
        (_with(("payload",), "-_+/"), "/payload"),
        (_with(("payload",), BIG), "/payload"),
        (_with(("payload",), BIG.rstrip("=")), "/payload"),
        (_with(("payload",), "A" * 20000), "/payload"),
        (_with(("signatures",), _DELETE), "/signatures"),
        (_with(("signatures",), {}), "/signatures"),
        (_with(("signatures",), []), "/signatures"),
        (_with(("signatures",), "sig"), "/signatures"),
        (_with(("signatures", 0), "sig"), "/signatures/0"),
        (_with(("signatures", 0), None), "/signatures/0"),
        (_with(("signatures", 0, "keyid"), _DELETE), "/signatures/0/keyid"),
        (_with(("signatures", 0, "keyid"), 7), "/signatures/0/keyid"),
        (_with(("signatures", 0, "sig"), _DELETE), "/signatures/0/sig"),
        (_with(("signatures", 0, "sig"), 7), "/signatures/0/sig"),
        (_with(("signatures", 0, "sig"), "@@@@"), "/signatures/0/sig"),
        (_with(("signatures", 0, "sig"), "AAA=="), "/signatures/0/sig"),
        (_with(("signatures", 0, "cert"), "x"), "/signatures/0/cert"),
    ],
)
def test_malformed(obj: object, pointer: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_envelope(obj)
    assert info.value.code == "validation_failed"
    assert info.value.pointer == pointer, info.value.detail


def test_two_signatures_refused() -> None:
    obj = _good()
    sigs = obj["signatures"]
    assert isinstance(sigs, list)
    obj["signatures"] = [sigs[0], build_envelope(OTHER, PAYLOAD)["signatures"][0]]  # type: ignore[index]
    with pytest.raises(ProtocolError) as info:
        parse_envelope(obj)
    assert (info.value.code, info.value.pointer) == ("validation_failed", "/signatures")


def test_payload_at_the_limit_accepted() -> None:
    payload = b"x" * 8192
    assert verify_envelope(parse_envelope(build_envelope(KEY, payload)), KEY.public_raw) == payload


def test_wrong_key() -> None:
    env = parse_envelope(_good())
    with pytest.raises(ProtocolError) as info:
        verify_envelope(env, OTHER.public_raw)
    assert info.value.code == "invalid_envelope_signature"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: Envelope(e.payload_type, e.payload + b" ", e.keyid, e.sig),
        lambda e: Envelope(e.payload_type + "x", e.payload, e.keyid, e.sig),
        lambda e: Envelope(e.payload_type, e.payload, e.keyid, e.sig[:-1] + b"\x00"),
        lambda e: Envelope(e.payload_type, e.payload, e.keyid, e.sig[:10]),
        lambda e: Envelope(e.payload_type, e.payload, e.keyid, b""),
    ],
)
def test_tampered(mutate: object) -> None:
    env = mutate(parse_envelope(_good()))  # type: ignore[operator]
    with pytest.raises(ProtocolError) as info:
        verify_envelope(env, KEY.public_raw)
    assert info.value.code == "invalid_envelope_signature"


def test_signature_over_raw_payload_is_not_pae() -> None:
    obj = _good()
    obj["signatures"] = [{"keyid": KEY.keyid, "sig": base64.b64encode(KEY.sign(PAYLOAD)).decode()}]
    with pytest.raises(ProtocolError) as info:
        verify_envelope(parse_envelope(obj), KEY.public_raw)
    assert info.value.code == "invalid_envelope_signature"
