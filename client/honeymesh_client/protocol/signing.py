"""RFC 9421 HTTP Message Signatures for node requests (PROTOCOL.md section 2).

A node signs each request under the label ``hm`` with Ed25519, covering
``"@method" "@path" "@query"`` and, when there is a body, ``"content-digest"``
(RFC 9530, ``sha-256``). The hub verifies with this very module, in this
order, each step raising :class:`ProtocolError` with the protocol's code::

    sig = parse_signature_headers(h.get("Signature-Input"), h.get("Signature"))
    check_components(sig, has_body=bool(body))   # invalid_signature
    check_freshness(sig, now)                    # signature_expired
    public_raw = <look up sig.keyid>             # unknown_key (hub)
    base = signature_base(sig, method, path, query, h.get("Content-Digest"))
    verify_signature(sig, public_raw, base)      # invalid_signature
    if requires_digest(sig):
        check_content_digest(h.get("Content-Digest"), body)  # digest_mismatch
    <nonce not seen for this key>                # replayed_request (hub)

Only what the protocol allows is accepted, and the parser of RFC 8941
structured fields below is written for exactly that: a Dictionary whose
members are Items or Inner Lists with Parameters, and the bare item types of
RFC 8941 section 3.3. Everything else fails closed.

Decisions (the protocol is silent on them):

- Covered components are exactly ``@method``, ``@path``, ``@query`` and
  ``content-digest``, each an sf-string without parameters (no ``;sf``,
  ``;key``, ``;req``): any other component is ``invalid_signature``, since
  the hub could not rebuild it the way the signer meant.
- Signature parameters are exactly ``created``, ``keyid``, ``nonce``, ``alg``
  and ``expires`` (RFC 9421 section 2.3); another one, ``tag`` included, is
  ``invalid_signature``.
- A Dictionary key repeated inside one header, or a parameter repeated on one
  member, makes the header unparseable (``missing_signature``) instead of
  "last one wins" (RFC 8941 section 4.2.2): a second ``hm`` added on the way
  must not silently replace the first.
- ``Content-Digest`` that is absent, unparseable or without a ``sha-256``
  member, when the signature covers it, is ``digest_mismatch`` once the
  signature has verified (before that, an absent covered header is
  ``invalid_signature``): the signer vouched for a digest that does not
  establish the body. A ``sha-512`` member, if also present, must match too.
- ``sign_request`` adds and covers ``Content-Digest`` whenever ``body`` is
  not None, even for an empty body; the hub requires it only for a non-empty
  body (``check_components``).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass

from .errors import ProtocolError
from .keys import NodeKey, b64encode, is_keyid, verify_ed25519

__all__ = [
    "ALG",
    "LABEL",
    "SignatureInput",
    "check_components",
    "check_content_digest",
    "check_freshness",
    "content_digest",
    "parse_signature_headers",
    "requires_digest",
    "sign_request",
    "signature_base",
    "split_request_target",
    "verify_signature",
]

LABEL = "hm"
ALG = "ed25519"

_METHOD = "@method"
_PATH = "@path"
_QUERY = "@query"
_CONTENT_DIGEST = "content-digest"
_REQUIRED_COMPONENTS = (_METHOD, _PATH, _QUERY)
_ALLOWED_COMPONENTS = frozenset((_METHOD, _PATH, _QUERY, _CONTENT_DIGEST))

_NONCE_CHARS = string.ascii_letters + string.digits + "-_"


# --------------------------------------------------------------------------
# RFC 8941 structured fields: the subset a signature needs.
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """An RFC 8941 section 3.3.4 Token, kept apart from a String on purpose:
    ``keyid=abc`` is not ``keyid="abc"``."""

    value: str


BareItem = int | float | str | bytes | bool | Token
Parameters = dict[str, BareItem]
Item = tuple[BareItem, Parameters]
# An Inner List is a list of Items with its own Parameters; ``list`` is never
# a BareItem, so ``isinstance(member[0], list)`` tells the two apart.
Member = tuple[BareItem | list[Item], Parameters]


class _SFError(ValueError):
    """Not a structured field we accept."""


_DIGITS = frozenset(string.digits)
_ALPHA = frozenset(string.ascii_letters)
_KEY_FIRST = frozenset(string.ascii_lowercase + "*")  # RFC 8941 3.1.2 key
_KEY_CHARS = frozenset(string.ascii_lowercase + string.digits + "_-.*")
# RFC 8941 3.3.4: token = ( ALPHA / "*" ) *( tchar / ":" / "/" ); tchar of RFC 9110 5.6.2
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~:/")
_BASE64_CHARS = frozenset(string.ascii_letters + string.digits + "+/=")


def _parse_dictionary(text: str) -> dict[str, Member]:
    """RFC 8941 section 4.2.2, strict: duplicate keys are refused."""
    s = text.strip(" \t")  # RFC 8941 4.2 steps 2 and 5; HTTP OWS (RFC 9110 5.5)
    n = len(s)
    i = 0
    out: dict[str, Member] = {}
    while i < n:
        key, i = _parse_key(s, i)
        member: Member
        if i < n and s[i] == "=":
            i += 1
            if i < n and s[i] == "(":
                member, i = _parse_inner_list(s, i)
            else:
                member, i = _parse_item(s, i)
        else:
            params, i = _parse_parameters(s, i)
            member = (True, params)
        if key in out:
            raise _SFError(f"dictionary key {key!r} is repeated")
        out[key] = member
        while i < n and s[i] in " \t":  # OWS
            i += 1
        if i == n:
            break
        if s[i] != ",":
            raise _SFError(f"expected ',' at offset {i}")
        i += 1
        while i < n and s[i] in " \t":
            i += 1
        if i == n:
            raise _SFError("trailing comma")
    return out


def _parse_key(s: str, i: int) -> tuple[str, int]:
    """RFC 8941 section 4.2.3.3."""
    n = len(s)
    if i >= n or s[i] not in _KEY_FIRST:
        raise _SFError(f"expected a key at offset {i}")
    j = i + 1
    while j < n and s[j] in _KEY_CHARS:
        j += 1
    return s[i:j], j


def _parse_item(s: str, i: int) -> tuple[Item, int]:
    """RFC 8941 section 4.2.3."""
    value, i = _parse_bare_item(s, i)
    params, i = _parse_parameters(s, i)
    return (value, params), i


def _parse_inner_list(s: str, i: int) -> tuple[Member, int]:
    """RFC 8941 section 4.2.1.2; ``s[i]`` is ``(``."""
    n = len(s)
    i += 1
    items: list[Item] = []
    while i < n:
        while i < n and s[i] == " ":
            i += 1
        if i >= n:
            break
        if s[i] == ")":
            params, i = _parse_parameters(s, i + 1)
            return (items, params), i
        item, i = _parse_item(s, i)
        items.append(item)
        if i >= n or s[i] not in " )":
            raise _SFError(f"expected ' ' or ')' at offset {i}")
    raise _SFError("unterminated inner list")


def _parse_parameters(s: str, i: int) -> tuple[Parameters, int]:
    """RFC 8941 section 4.2.3.2, strict: repeated keys are refused."""
    n = len(s)
    params: Parameters = {}
    while i < n and s[i] == ";":
        i += 1
        while i < n and s[i] == " ":
            i += 1
        key, i = _parse_key(s, i)
        value: BareItem = True
        if i < n and s[i] == "=":
            value, i = _parse_bare_item(s, i + 1)
        if key in params:
            raise _SFError(f"parameter {key!r} is repeated")
        params[key] = value
    return params, i


def _parse_bare_item(s: str, i: int) -> tuple[BareItem, int]:
    """RFC 8941 section 4.2.3.1."""
    if i >= len(s):
        raise _SFError("expected an item at the end")
    c = s[i]
    if c == '"':
        return _parse_string(s, i)
    if c == "-" or c in _DIGITS:
        return _parse_number(s, i)
    if c == ":":
        return _parse_byte_sequence(s, i)
    if c == "?":
        # RFC 8941 4.2.8
        flag = s[i + 1 : i + 2]
        if flag == "1":
            return True, i + 2
        if flag == "0":
            return False, i + 2
        raise _SFError(f"bad boolean at offset {i}")
    if c == "*" or c in _ALPHA:
        # RFC 8941 4.2.6
        n = len(s)
        j = i + 1
        while j < n and s[j] in _TOKEN_CHARS:
            j += 1
        return Token(s[i:j]), j
    raise _SFError(f"unexpected {c!r} at offset {i}")


def _parse_string(s: str, i: int) -> tuple[str, int]:
    """RFC 8941 section 4.2.5: printable ASCII; only \\" and \\\\ escapes."""
    end = s.find('"', i + 1)
    if end == -1:
        raise _SFError("unterminated string")
    chunk = s[i + 1 : end]
    if "\\" not in chunk:  # the common case: no escapes
        if not (chunk.isascii() and chunk.isprintable()):
            raise _SFError("string holds a character outside printable ASCII")
        return chunk, end + 1
    out: list[str] = []
    n = len(s)
    j = i + 1
    while j < n:
        c = s[j]
        if c == "\\":
            nxt = s[j + 1 : j + 2]
            if nxt not in ('"', "\\"):
                raise _SFError("bad escape in string")
            out.append(nxt)
            j += 2
            continue
        if c == '"':
            return "".join(out), j + 1
        if not " " <= c <= "~":
            raise _SFError("string holds a character outside printable ASCII")
        out.append(c)
        j += 1
    raise _SFError("unterminated string")


def _parse_number(s: str, i: int) -> tuple[int | float, int]:
    """RFC 8941 section 4.2.4: integers of at most 15 digits, decimals 12.3."""
    n = len(s)
    j = i + 1 if s[i] == "-" else i
    start = j
    while j < n and s[j] in _DIGITS:
        j += 1
    int_digits = j - start
    if int_digits == 0:
        raise _SFError(f"bad number at offset {i}")
    if j < n and s[j] == ".":
        if int_digits > 12:
            raise _SFError("decimal too long")
        k = j + 1
        while k < n and s[k] in _DIGITS:
            k += 1
        if not 1 <= k - j - 1 <= 3:
            raise _SFError("bad decimal fraction")
        return float(s[i:k]), k
    if int_digits > 15:
        raise _SFError("integer too long")
    return int(s[i:j]), j


def _parse_byte_sequence(s: str, i: int) -> tuple[bytes, int]:
    """RFC 8941 section 4.2.7: ``:`` base64 (standard alphabet, padded) ``:``."""
    end = s.find(":", i + 1)
    if end == -1:
        raise _SFError("unterminated byte sequence")
    chunk = s[i + 1 : end]
    if not _BASE64_CHARS.issuperset(chunk):
        raise _SFError("byte sequence is not base64")
    try:
        return binascii.a2b_base64(chunk, strict_mode=True), end + 1
    except binascii.Error:
        raise _SFError("byte sequence is not base64") from None


def _serialize_string(value: str) -> str:
    """RFC 8941 section 4.1.6."""
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _serialize_params_value(components: tuple[str, ...], params: Parameters) -> str:
    """RFC 9421 section 2.3: the Inner List of components with its parameters,
    serialised as RFC 8941 section 4.1.1.1 does (one space between items).

    Only Strings and Integers reach here: parsing refused every other type.
    """
    parts = ["(", " ".join([_serialize_string(c) for c in components]), ")"]
    for name, value in params.items():
        parts.append(f";{name}=")
        parts.append(_serialize_string(value) if isinstance(value, str) else str(value))
    return "".join(parts)


# --------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignatureInput:
    """The ``hm`` signature of a request, parsed and checked for shape.

    ``params_value`` is the canonical ``@signature-params`` value; the
    signature base is rebuilt from it, never from the header's own spelling.
    """

    components: tuple[str, ...]
    created: int
    expires: int | None
    keyid: str
    nonce: str
    alg: str | None
    signature: bytes
    params_value: str


def _is_nonce(value: str) -> bool:
    # PROTOCOL.md section 2: 16 to 128 characters of A-Za-z0-9_-
    return 16 <= len(value) <= 128 and value.isascii() and not value.strip(_NONCE_CHARS)


def _missing(detail: str) -> ProtocolError:
    return ProtocolError("missing_signature", detail)


def _invalid(detail: str) -> ProtocolError:
    return ProtocolError("invalid_signature", detail)


def parse_signature_headers(signature_input: str | None, signature: str | None) -> SignatureInput:
    """Parse ``Signature-Input`` and ``Signature`` and return the ``hm`` one.

    Several field lines joined with ", " form one valid Dictionary (RFC 8941
    section 4.2.2), so other labels may sit beside ``hm``; they are ignored.
    """
    if signature_input is None or signature is None:
        raise _missing("the request needs Signature-Input and Signature headers")
    try:
        inputs = _parse_dictionary(signature_input)
    except _SFError as exc:
        raise _missing(f"Signature-Input is not a structured dictionary: {exc}") from None
    try:
        signatures = _parse_dictionary(signature)
    except _SFError as exc:
        raise _missing(f"Signature is not a structured dictionary: {exc}") from None
    member = inputs.get(LABEL)
    sig_member = signatures.get(LABEL)
    if member is None or sig_member is None:
        raise _missing('the request has no signature labelled "hm"')
    covered, params = member
    if not isinstance(covered, list):
        raise _missing('Signature-Input "hm" is not an inner list')
    sig_value = sig_member[0]
    if not isinstance(sig_value, bytes):
        raise _missing('Signature "hm" is not a byte sequence')

    # RFC 9421 section 2.1: component identifiers are sf-strings.
    components: list[str] = []
    for value, item_params in covered:
        if type(value) is not str:
            raise _invalid("a covered component is not a string")
        if item_params:
            raise _invalid(f'component "{value}" has parameters; none are supported')
        if value not in _ALLOWED_COMPONENTS:
            raise _invalid(f'component "{value}" is not one the protocol signs')
        if value in components:
            raise _invalid(f'component "{value}" is listed twice')
        components.append(value)
    for required in _REQUIRED_COMPONENTS:
        if required not in components:
            raise _invalid(f'the signature does not cover "{required}"')

    # RFC 9421 section 2.3: signature parameters.
    created: int | None = None
    expires: int | None = None
    keyid: str | None = None
    nonce: str | None = None
    alg: str | None = None
    for name, param in params.items():
        if name in ("created", "expires"):
            if type(param) is not int:
                raise _invalid(f'"{name}" is not an integer')
            if name == "created":
                created = param
            else:
                expires = param
        elif name in ("keyid", "nonce", "alg"):
            if type(param) is not str:
                raise _invalid(f'"{name}" is not a string')
            if name == "keyid":
                keyid = param
            elif name == "nonce":
                nonce = param
            else:
                alg = param
        else:
            raise _invalid(f'signature parameter "{name}" is not supported')
    if created is None:
        raise _invalid('the signature has no "created" parameter')
    if keyid is None:
        raise _invalid('the signature has no "keyid" parameter')
    if nonce is None:
        raise _invalid('the signature has no "nonce" parameter')
    if not is_keyid(keyid):
        raise _invalid('"keyid" is not 64 lowercase hex characters')
    if not _is_nonce(nonce):
        raise _invalid('"nonce" is not 16 to 128 characters of A-Za-z0-9_-')
    if alg is not None and alg != ALG:
        raise _invalid(f'"alg" is {alg!r}; only "ed25519" is accepted')
    return SignatureInput(
        components=tuple(components),
        created=created,
        expires=expires,
        keyid=keyid,
        nonce=nonce,
        alg=alg,
        signature=sig_value,
        params_value=_serialize_params_value(tuple(components), params),
    )


def requires_digest(sig: SignatureInput) -> bool:
    """Whether the signature covers ``content-digest``."""
    return _CONTENT_DIGEST in sig.components


def check_components(sig: SignatureInput, has_body: bool) -> None:
    """A request with a non-empty body must sign its digest (PROTOCOL.md 2),
    otherwise the body could be swapped under a valid signature."""
    if has_body and _CONTENT_DIGEST not in sig.components:
        raise _invalid('the request has a body but the signature does not cover "content-digest"')


def check_freshness(
    sig: SignatureInput, now: float, *, max_age: int = 300, max_skew: int = 60
) -> None:
    """``signature_expired`` when ``created`` is older than ``max_age``, further
    ahead than ``max_skew``, or ``expires`` (RFC 9421 section 2.3) has passed."""
    if sig.created < now - max_age:
        raise ProtocolError(
            "signature_expired", f"the signature was created more than {max_age} s ago"
        )
    if sig.created > now + max_skew:
        raise ProtocolError(
            "signature_expired",
            f"the signature was created more than {max_skew} s in the future; check the clock",
        )
    if sig.expires is not None and sig.expires < now:
        raise ProtocolError("signature_expired", "the signature has expired")


def split_request_target(target: str) -> tuple[str, str]:
    """Split a raw origin-form target (``/a%2Fb?x=1``) into path and query,
    percent-encoding kept; the query comes without its ``?``, ``""`` if none."""
    path, _, query = target.partition("?")
    return path, query


def _component_value(
    component: str, method: str, path: str, query: str, content_digest_header: str | None
) -> str:
    if component == _METHOD:
        return method  # RFC 9421 2.2.1: as sent, case-sensitive
    if component == _PATH:
        return path or "/"  # RFC 9421 2.2.6: an empty path is "/"
    if component == _QUERY:
        return "?" + query  # RFC 9421 2.2.7: "?" alone when there is no query
    if content_digest_header is None:
        raise _invalid('the signature covers "content-digest" but the header is absent')
    # RFC 9421 2.1: the field value with leading and trailing whitespace removed
    return content_digest_header.strip(" \t")


def signature_base(
    sig: SignatureInput,
    method: str,
    path: str,
    query: str,
    content_digest_header: str | None,
) -> bytes:
    """The RFC 9421 section 2.5 signature base, in the order the signer listed.

    ``path`` and ``query`` are exactly as sent (percent-encoding kept), the
    query without its leading ``?``. Lines are ``"<component>": <value>``,
    then ``"@signature-params": <params>`` with no trailing newline.
    """
    lines = [
        f'"{c}": {_component_value(c, method, path, query, content_digest_header)}'
        for c in sig.components
    ]
    lines.append(f'"@signature-params": {sig.params_value}')
    text = "\n".join(lines)
    # RFC 9421 2.5: a value that would break a line, or non-ASCII, fails.
    if "\r" in text or text.count("\n") != len(sig.components):
        raise _invalid("a covered value holds a line break")
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise _invalid("a covered value is not ASCII") from None


def verify_signature(sig: SignatureInput, public_raw: bytes, base: bytes) -> None:
    """``invalid_signature`` unless ``sig.signature`` is the key's Ed25519
    signature of ``base`` (RFC 9421 section 3.3.6)."""
    if not verify_ed25519(public_raw, sig.signature, base):
        raise _invalid("the signature does not verify")


def content_digest(body: bytes) -> str:
    """The ``Content-Digest`` value for ``body`` (RFC 9530 section 2)."""
    return f"sha-256=:{b64encode(hashlib.sha256(body).digest())}:"


def check_content_digest(header: str | None, body: bytes) -> None:
    """``digest_mismatch`` unless the header's ``sha-256`` member is the body's
    digest (and its ``sha-512`` member too, when present); see the module
    docstring for why a missing or malformed header also says so."""
    if header is None:
        raise ProtocolError("digest_mismatch", "the Content-Digest header is absent")
    try:
        members = _parse_dictionary(header)
    except _SFError:
        raise ProtocolError(
            "digest_mismatch", "the Content-Digest header is not a structured dictionary"
        ) from None
    sha256 = members.get("sha-256")
    if sha256 is None or not isinstance(sha256[0], bytes):
        raise ProtocolError("digest_mismatch", "the Content-Digest header has no sha-256 digest")
    if not hmac.compare_digest(sha256[0], hashlib.sha256(body).digest()):
        raise ProtocolError("digest_mismatch", "the body does not match its Content-Digest")
    sha512 = members.get("sha-512")
    if sha512 is not None and not (
        isinstance(sha512[0], bytes)
        and hmac.compare_digest(sha512[0], hashlib.sha512(body).digest())
    ):
        raise ProtocolError("digest_mismatch", "the body does not match its Content-Digest")


def sign_request(
    key: NodeKey,
    method: str,
    path: str,
    query: str,
    body: bytes | None,
    *,
    created: int | None = None,
    nonce: str | None = None,
    expires: int | None = None,
) -> dict[str, str]:
    """Sign a request; return the headers to add to it.

    ``path`` is the raw path as it will be sent and ``query`` the raw query
    without ``?`` (``""`` when none): the HTTP client must send the URL
    unchanged (no re-quoting), or the hub's base will differ. With a
    ``body`` (even ``b""``), ``Content-Digest`` is added and covered. The
    base is built by :func:`signature_base`, the function the hub uses.
    """
    if nonce is None:
        nonce = secrets.token_urlsafe(18)  # 24 characters, 144 bits
    elif not _is_nonce(nonce):
        raise ValueError("a nonce is 16 to 128 characters of A-Za-z0-9_-")
    if created is None:
        created = int(time.time())
    components: tuple[str, ...] = _REQUIRED_COMPONENTS
    digest: str | None = None
    if body is not None:
        components += (_CONTENT_DIGEST,)
        digest = content_digest(body)
    params: Parameters = {"created": created, "keyid": key.keyid, "nonce": nonce, "alg": ALG}
    if expires is not None:
        params["expires"] = expires
    unsigned = SignatureInput(
        components=components,
        created=created,
        expires=expires,
        keyid=key.keyid,
        nonce=nonce,
        alg=ALG,
        signature=b"",
        params_value=_serialize_params_value(components, params),
    )
    method = method.upper()
    signature = key.sign(signature_base(unsigned, method, path, query, digest))
    headers = {
        "Signature-Input": f"{LABEL}={unsigned.params_value}",
        "Signature": f"{LABEL}=:{b64encode(signature)}:",
    }
    if digest is not None:
        headers["Content-Digest"] = digest
    return headers
