"""RFC 9421 signing: round trips, every refusal code, and interoperability."""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Mapping

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)

from honeymesh_client.protocol.errors import ProtocolError
from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import (
    SignatureInput,
    check_components,
    check_content_digest,
    check_freshness,
    content_digest,
    parse_signature_headers,
    requires_digest,
    sign_request,
    signature_base,
    split_request_target,
    verify_signature,
)

NOW = 1_795_000_000
KEY = NodeKey.from_private_bytes(bytes(range(32)))
OTHER = NodeKey.from_private_bytes(bytes(range(1, 33)))
NONCE = "abcdefghijklmnop_-0123"


def verify_request(
    headers: Mapping[str, str],
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    public_raw: bytes = KEY.public_raw,
    now: float = NOW,
) -> SignatureInput:
    """The hub's order of checks (signing.py module docstring)."""
    sig = parse_signature_headers(headers.get("Signature-Input"), headers.get("Signature"))
    check_components(sig, has_body=bool(body))
    check_freshness(sig, now)
    base = signature_base(sig, method, path, query, headers.get("Content-Digest"))
    verify_signature(sig, public_raw, base)
    if requires_digest(sig):
        check_content_digest(headers.get("Content-Digest"), body)
    return sig


def expect(code: str, *args: object, **kwargs: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        verify_request(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code, info.value.detail
    return info.value


# -- round trips ------------------------------------------------------------


def test_round_trip_get_without_body() -> None:
    headers = sign_request(KEY, "get", "/v1/feed", "", None, created=NOW, nonce=NONCE)
    assert "Content-Digest" not in headers
    sig = verify_request(headers, "GET", "/v1/feed", "", b"")
    assert sig.components == ("@method", "@path", "@query")
    assert sig.keyid == KEY.keyid
    assert sig.nonce == NONCE
    assert sig.created == NOW
    assert sig.alg == "ed25519"
    assert sig.expires is None
    assert not requires_digest(sig)


def test_round_trip_post_with_body() -> None:
    body = b'{"envelopes":[]}'
    headers = sign_request(KEY, "POST", "/v1/signals", "", body, created=NOW)
    assert headers["Content-Digest"] == content_digest(body)
    sig = verify_request(headers, "POST", "/v1/signals", "", body)
    assert requires_digest(sig)
    assert len(sig.nonce) == 24


def test_round_trip_query_percent_encoding_kept() -> None:
    path, query = split_request_target("/v1/a%2Fb/feed?after=x%2By&limit=5&q=%7E")
    assert (path, query) == ("/v1/a%2Fb/feed", "after=x%2By&limit=5&q=%7E")
    headers = sign_request(KEY, "GET", path, query, None, created=NOW)
    verify_request(headers, "GET", path, query, b"")
    # The decoded spelling is another request.
    expect("invalid_signature", headers, "GET", "/v1/a/b/feed", query, b"")
    expect("invalid_signature", headers, "GET", path, "after=x+y&limit=5&q=~", b"")


def test_signature_base_shape() -> None:
    headers = sign_request(KEY, "POST", "/p", "", b"x", created=NOW, nonce=NONCE, expires=NOW + 9)
    sig = parse_signature_headers(headers["Signature-Input"], headers["Signature"])
    base = signature_base(sig, "POST", "/p", "", headers["Content-Digest"])
    assert base == (
        b'"@method": POST\n"@path": /p\n"@query": ?\n'
        b'"content-digest": ' + content_digest(b"x").encode() + b"\n"
        b'"@signature-params": ("@method" "@path" "@query" "content-digest")'
        b';created=1795000000;keyid="' + KEY.keyid.encode() + b'";nonce="' + NONCE.encode() + b'"'
        b';alg="ed25519";expires=1795000009'
    )
    assert sig.expires == NOW + 9


def test_empty_path_is_slash() -> None:
    headers = sign_request(KEY, "GET", "/", "", None, created=NOW)
    verify_request(headers, "GET", "", "", b"")


def test_empty_body_signed_with_digest_is_accepted() -> None:
    headers = sign_request(KEY, "POST", "/p", "", b"", created=NOW)
    verify_request(headers, "POST", "/p", "", b"")


def test_params_value_is_canonical_whatever_the_spelling() -> None:
    canonical = sign_request(KEY, "GET", "/p", "", None, created=NOW, nonce=NONCE)
    spaced = canonical["Signature-Input"].replace(" ", "  ").replace("(", "(  ")
    spaced = "other=(), " + spaced
    headers = {"Signature-Input": spaced, "Signature": "x=:AAAA:, " + canonical["Signature"]}
    verify_request(headers, "GET", "/p", "", b"")


def test_multiple_field_lines_joined() -> None:
    headers = sign_request(KEY, "GET", "/p", "", None, created=NOW)
    headers["Signature-Input"] = 'proxy=("@method");created=1, ' + headers["Signature-Input"]
    headers["Signature"] = headers["Signature"] + ", proxy=:AAAA:"
    verify_request(headers, "GET", "/p", "", b"")


def test_components_in_another_order() -> None:
    body = b"{}"
    sig_input = (
        f'hm=("content-digest" "@query" "@path" "@method");created={NOW}'
        f';keyid="{KEY.keyid}";nonce="{NONCE}"'
    )
    sig = parse_signature_headers(sig_input, "hm=:AAAA:")
    base = signature_base(sig, "POST", "/p", "q=1", content_digest(body))
    assert base.startswith(b'"content-digest": sha-256=:')
    headers = {
        "Signature-Input": sig_input,
        "Signature": "hm=:" + base64.b64encode(KEY.sign(base)).decode() + ":",
        "Content-Digest": content_digest(body),
    }
    sig = verify_request(headers, "POST", "/p", "q=1", body)
    assert sig.alg is None


# -- missing_signature ------------------------------------------------------


GOOD = sign_request(KEY, "GET", "/p", "", None, created=NOW, nonce=NONCE)


@pytest.mark.parametrize(
    ("sig_input", "signature"),
    [
        (None, GOOD["Signature"]),
        (GOOD["Signature-Input"], None),
        (None, None),
        ("", ""),
        ("garbage(((", GOOD["Signature"]),
        (GOOD["Signature-Input"], "hm=:not base64!:"),
        (GOOD["Signature-Input"], "hm=:AAAA"),
        (GOOD["Signature-Input"].replace("hm=", "sig1="), GOOD["Signature"]),
        (GOOD["Signature-Input"], GOOD["Signature"].replace("hm=", "sig1=")),
        (GOOD["Signature-Input"], 'hm="a string"'),
        (GOOD["Signature-Input"], "hm=(:AAAA:)"),
        ('hm="@method"', GOOD["Signature"]),
        (GOOD["Signature-Input"] + ",", GOOD["Signature"]),
        (GOOD["Signature-Input"] + ", " + GOOD["Signature-Input"], GOOD["Signature"]),
        (GOOD["Signature-Input"], GOOD["Signature"] + ", " + GOOD["Signature"]),
        (GOOD["Signature-Input"] + ";created=1", GOOD["Signature"]),  # repeated parameter
        ('hm=("@method" "@path" "@query";created=1', GOOD["Signature"]),
        ('hm=("@method""@path")', GOOD["Signature"]),
        ("HM=()", GOOD["Signature"]),
        ('hm=("@m\\x")', GOOD["Signature"]),
        ('hm=("\u00e9")', GOOD["Signature"]),
        ("hm=(1234567890123456)", GOOD["Signature"]),
        ("hm=(?2)", GOOD["Signature"]),
        ("hm=(1.2345)", GOOD["Signature"]),
    ],
)
def test_missing_signature(sig_input: str | None, signature: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_signature_headers(sig_input, signature)
    assert info.value.code == "missing_signature"


# -- invalid_signature at parse time ------------------------------------------


def _input(components: str, params: str) -> str:
    return f"hm=({components}){params}"


COMPONENTS = '"@method" "@path" "@query"'
PARAMS = f';created={NOW};keyid="{KEY.keyid}";nonce="{NONCE}"'


@pytest.mark.parametrize(
    "sig_input",
    [
        _input('"@method" "@path"', PARAMS),
        _input('"@method" "@query"', PARAMS),
        _input('"@path" "@query"', PARAMS),
        _input("", PARAMS),
        _input(COMPONENTS + ' "@method"', PARAMS),
        _input(COMPONENTS + ' "@authority"', PARAMS),
        _input(COMPONENTS + ' "date"', PARAMS),
        _input(COMPONENTS + ' "content-digest";sf', PARAMS),
        _input('"@method";req "@path" "@query"', PARAMS),
        _input('method "@path" "@query"', PARAMS),  # a token, not a string
        _input('"@METHOD" "@path" "@query"', PARAMS),
        _input(COMPONENTS, f';keyid="{KEY.keyid}";nonce="{NONCE}"'),
        _input(COMPONENTS, f';created={NOW};nonce="{NONCE}"'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid}"'),
        _input(COMPONENTS, f';created="{NOW}";keyid="{KEY.keyid}";nonce="{NONCE}"'),
        _input(COMPONENTS, f';created={NOW}.5;keyid="{KEY.keyid}";nonce="{NONCE}"'),
        _input(COMPONENTS, f';created;keyid="{KEY.keyid}";nonce="{NONCE}"'),
        _input(COMPONENTS, f';created={NOW};keyid={KEY.keyid[:1]};nonce="{NONCE}"'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid}";nonce=abcdefghijklmnopq'),
        _input(COMPONENTS, PARAMS + ';expires="1"'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid}";nonce="{"a" * 15}"'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid}";nonce="{"a" * 129}"'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid}";nonce="abcdefghijklmnop+"'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid}";nonce="abcdefghijklmnop="'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid}";nonce="abcdefghijklmnop "'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid.upper()}";nonce="{NONCE}"'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid[:-1]}";nonce="{NONCE}"'),
        _input(COMPONENTS, f';created={NOW};keyid="{KEY.keyid}0";nonce="{NONCE}"'),
        _input(COMPONENTS, f';created={NOW};keyid="{"g" * 64}";nonce="{NONCE}"'),
        _input(COMPONENTS, PARAMS + ';alg="rsa-pss-sha512"'),
        _input(COMPONENTS, PARAMS + ';alg="ED25519"'),
        _input(COMPONENTS, PARAMS + ";alg=ed25519"),
        _input(COMPONENTS, PARAMS + ';tag="x"'),
        _input(COMPONENTS, PARAMS + ";other=1"),
    ],
)
def test_invalid_signature_shape(sig_input: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_signature_headers(sig_input, GOOD["Signature"])
    assert info.value.code == "invalid_signature", info.value.detail


@pytest.mark.parametrize("length", [16, 128])
def test_nonce_length_bounds_accepted(length: int) -> None:
    nonce = ("aZ0_-" * 30)[:length]
    headers = sign_request(KEY, "GET", "/p", "", None, created=NOW, nonce=nonce)
    assert verify_request(headers, "GET", "/p", "", b"").nonce == nonce


@pytest.mark.parametrize("nonce", ["a" * 15, "a" * 129, "abcdefghijklmnop!"])
def test_sign_request_refuses_bad_nonce(nonce: str) -> None:
    with pytest.raises(ValueError):
        sign_request(KEY, "GET", "/p", "", None, nonce=nonce)


def test_body_without_digest_coverage() -> None:
    headers = sign_request(KEY, "POST", "/p", "", None, created=NOW)
    expect("invalid_signature", headers, "POST", "/p", "", b"{}")


def test_covered_digest_header_absent() -> None:
    headers = sign_request(KEY, "POST", "/p", "", b"{}", created=NOW)
    del headers["Content-Digest"]
    expect("invalid_signature", headers, "POST", "/p", "", b"{}")


@pytest.mark.parametrize(
    ("path", "query"), [("/p\n", ""), ("/p", "a\r\nb"), ("/é", ""), ("/p", "é")]
)
def test_base_refuses_line_breaks_and_non_ascii(path: str, query: str) -> None:
    sig = parse_signature_headers(GOOD["Signature-Input"], GOOD["Signature"])
    with pytest.raises(ProtocolError) as info:
        signature_base(sig, "GET", path, query, None)
    assert info.value.code == "invalid_signature"


# -- signature_expired --------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "expires", "ok"),
    [
        (NOW, None, True),
        (NOW - 300, None, True),
        (NOW - 301, None, False),
        (NOW + 60, None, True),
        (NOW + 61, None, False),
        (NOW, NOW, True),
        (NOW - 10, NOW - 1, False),
        (NOW - 10, NOW + 100, True),
    ],
)
def test_freshness(created: int, expires: int | None, ok: bool) -> None:
    headers = sign_request(KEY, "GET", "/p", "", None, created=created, expires=expires)
    if ok:
        verify_request(headers, "GET", "/p", "", b"")
    else:
        expect("signature_expired", headers, "GET", "/p", "", b"")


def test_freshness_limits_are_parameters() -> None:
    headers = sign_request(KEY, "GET", "/p", "", None, created=NOW - 100)
    sig = parse_signature_headers(headers["Signature-Input"], headers["Signature"])
    check_freshness(sig, NOW)
    with pytest.raises(ProtocolError):
        check_freshness(sig, NOW, max_age=99)


# -- tampering ----------------------------------------------------------------

BODY = b'{"envelopes":[{"a":1}]}'
SIGNED = sign_request(KEY, "POST", "/v1/signals", "x=1", BODY, created=NOW)


def test_untampered_passes() -> None:
    verify_request(SIGNED, "POST", "/v1/signals", "x=1", BODY)


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("PUT", "/v1/signals", "x=1"),
        ("post", "/v1/signals", "x=1"),
        ("POST", "/v1/signal", "x=1"),
        ("POST", "/v1/signals/", "x=1"),
        ("POST", "/v1/signals", "x=2"),
        ("POST", "/v1/signals", ""),
        ("POST", "/v1/signals", "x=1&y=2"),
    ],
)
def test_tampered_request_line(method: str, path: str, query: str) -> None:
    expect("invalid_signature", SIGNED, method, path, query, BODY)


def test_tampered_body() -> None:
    expect("digest_mismatch", SIGNED, "POST", "/v1/signals", "x=1", BODY + b" ")


def test_tampered_digest_header() -> None:
    headers = dict(SIGNED, **{"Content-Digest": content_digest(BODY + b" ")})
    expect("invalid_signature", headers, "POST", "/v1/signals", "x=1", BODY + b" ")


def test_tampered_signature_input() -> None:
    headers = dict(SIGNED)
    headers["Signature-Input"] = headers["Signature-Input"].replace(
        f"created={NOW}", f"created={NOW + 1}"
    )
    expect("invalid_signature", headers, "POST", "/v1/signals", "x=1", BODY)


def test_signature_by_another_key() -> None:
    headers = sign_request(OTHER, "POST", "/v1/signals", "x=1", BODY, created=NOW)
    headers["Signature-Input"] = headers["Signature-Input"].replace(OTHER.keyid, KEY.keyid)
    expect("invalid_signature", headers, "POST", "/v1/signals", "x=1", BODY)
    # and the other key's own headers don't verify with our key
    other = sign_request(OTHER, "POST", "/v1/signals", "x=1", BODY, created=NOW)
    expect("invalid_signature", other, "POST", "/v1/signals", "x=1", BODY)


def test_garbage_signature_bytes() -> None:
    headers = dict(SIGNED, Signature="hm=:AAAA:")
    expect("invalid_signature", headers, "POST", "/v1/signals", "x=1", BODY)


# -- Content-Digest -------------------------------------------------------------


def test_content_digest_value() -> None:
    digest = base64.b64encode(hashlib.sha256(b"hello").digest()).decode()
    assert content_digest(b"hello") == f"sha-256=:{digest}:"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "sha-256=:!!:",
        'sha-256="' + content_digest(b"hello")[9:-1] + '"',
        "sha-512=:" + base64.b64encode(hashlib.sha512(b"hello").digest()).decode() + ":",
        content_digest(b"hello!"),
        content_digest(b"hello") + ", sha-512=:AAAA:",
        content_digest(b"hello") + ", " + content_digest(b"hello"),  # repeated key
    ],
)
def test_check_content_digest_refuses(header: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        check_content_digest(header, b"hello")
    assert info.value.code == "digest_mismatch"


def test_check_content_digest_accepts_more_algorithms() -> None:
    sha512 = base64.b64encode(hashlib.sha512(b"hello").digest()).decode()
    check_content_digest(f"sha-512=:{sha512}:, " + content_digest(b"hello"), b"hello")
    check_content_digest(content_digest(b"hello") + ", unixsum=:AAAA:", b"hello")


# -- interoperability with http-message-signatures ------------------------------


class Message:
    """The request shape http-message-signatures reads: method, url, headers."""

    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method = method
        self.url = url
        self.headers = headers


def _their_signer() -> HTTPMessageSigner:
    resolver = MappingKeyResolver(public_keys={}, private_keys={KEY.keyid: KEY.private_pem()})
    return HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver)


def _their_verifier() -> HTTPMessageVerifier:
    public = Ed25519PublicKey.from_public_bytes(KEY.public_raw)
    resolver = MappingKeyResolver(public_keys={KEY.keyid: public}, private_keys={})
    return HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=resolver)


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("POST", "/v1/signals", "", b'{"envelopes":[]}'),
        ("POST", "/v1/nodes/self/keys", "a=%2F%20b&c", b"{}"),
        ("GET", "/v1/feed", "after=abc_-1&limit=5", None),
        ("GET", "/v1/keys/%7Eab", "", None),
    ],
)
def test_theirs_verified_by_ours(method: str, path: str, query: str, body: bytes | None) -> None:
    url = "https://hub.example:8443" + path + (f"?{query}" if query else "")
    message = Message(method, url, {})
    created = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
    _their_signer().sign(
        message,
        key_id=KEY.keyid,
        created=created,
        nonce=NONCE,
        label="hm",
        covered_component_ids=("@method", "@path", "@query"),
        body=body,
    )
    headers = message.headers
    assert headers["Signature-Input"].startswith('hm=("@method" "@path" "@query"')
    sig = verify_request(headers, method, path, query, body or b"")
    assert requires_digest(sig) is (body is not None)
    assert sig.keyid == KEY.keyid
    assert sig.nonce == NONCE


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("POST", "/v1/signals", "", b'{"envelopes":[]}'),
        ("POST", "/v1/x", "a=%2F%20b&c", b"{}"),
        ("GET", "/v1/feed", "after=abc_-1&limit=5", None),
    ],
)
def test_ours_verified_by_theirs(method: str, path: str, query: str, body: bytes | None) -> None:
    headers = sign_request(KEY, method, path, query, body)  # now: their clock
    url = "https://hub.example" + path + (f"?{query}" if query else "")
    message = Message(method, url, headers)
    results = _their_verifier().verify(
        message, require_components=("@method", "@path", "@query"), body=body
    )
    assert len(results) == 1
    assert results[0].label == "hm"
    assert results[0].parameters["keyid"] == KEY.keyid
    if body:
        assert results[0].body == body


def test_theirs_detects_our_tampering() -> None:
    headers = sign_request(KEY, "GET", "/v1/feed", "a=1", None)
    message = Message("GET", "https://hub.example/v1/feed?a=2", headers)
    with pytest.raises(InvalidSignature):
        _their_verifier().verify(message)
