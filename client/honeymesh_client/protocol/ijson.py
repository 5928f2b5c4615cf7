"""Strict I-JSON (RFC 7493) parsing for bodies and signal payloads.

Two parsers must never read one signed payload two ways (PROTOCOL.md
section 3), so whatever JSON leaves room for interpretation is refused:
duplicate member names (RFC 7493 2.3), lone surrogates (2.1), NaN and
Infinity (not JSON at all, RFC 8259 6), numbers longer than 20 characters,
and nesting deeper than 32 (arrays and objects; the top level is depth 1).
U+0000 is refused as well (PROTOCOL.md 3 r2): no text the hub stores can carry it,
and PostgreSQL's text and jsonb cannot.

Decisions: a number that overflows an IEEE 754 double (``1e400``) is refused
too, since it would read as Infinity (RFC 7493 2.2). A UTF-8 byte order mark
is refused (RFC 8259 8.1: "MUST NOT add").

Speed: the stdlib decoder does the work; the hooks see each number token
and each object's pairs, and the walk for depth and surrogates only runs
when cheap string counts say it may find something.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from .errors import ProtocolError

__all__ = ["MAX_DEPTH", "MAX_NUMBER_LENGTH", "dumps", "loads"]

MAX_DEPTH = 32
MAX_NUMBER_LENGTH = 20
_CONTAINERS = (dict, list)  # the decoder makes exactly these types


def _invalid(detail: str) -> ProtocolError:
    return ProtocolError("invalid_json", detail)


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # RFC 7493 2.3
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _invalid(f"member name {name!r} appears twice in one object")
            seen.add(name)
    return obj


def _constant(token: str) -> object:
    raise _invalid(f"{token} is not a JSON number")


def _int(token: str) -> int:
    if len(token) > MAX_NUMBER_LENGTH:
        raise _invalid(f"a number is longer than {MAX_NUMBER_LENGTH} characters")
    return int(token)


def _float(token: str) -> float:
    if len(token) > MAX_NUMBER_LENGTH:
        raise _invalid(f"a number is longer than {MAX_NUMBER_LENGTH} characters")
    value = float(token)
    if math.isinf(value):  # RFC 7493 2.2: beyond an IEEE 754 double
        raise _invalid("a number is too large for a double")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_int=_int, parse_float=_float
)


def _may_hold_surrogate_escape(text: str) -> bool:
    r"""Whether ``text`` has a ``\uD800``-``\uDFFF`` escape. Strict UTF-8 can't
    carry a surrogate, so only an escape can produce one (RFC 7493 2.1)."""
    i = text.find("\\u")
    while i != -1:
        if text[i + 2 : i + 3] in ("d", "D") and text[i + 3 : i + 4] in "89abcdefABCDEF":
            return True
        i = text.find("\\u", i + 2)
    return False


def _has_lone_surrogate(value: str) -> bool:
    # The decoder joins valid pairs into one code point, so any surrogate
    # left is lone; UTF-8 encoding is the quickest test for one.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_depth(value: object) -> None:
    """Level by level, containers only: no recursion, no per-node tuples."""
    level: list[object] = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise _invalid(f"nesting is deeper than {MAX_DEPTH}")
        below: list[object] = []
        for node in level:
            if isinstance(node, dict):
                below += [child for child in node.values() if type(child) in _CONTAINERS]
            elif isinstance(node, list):
                below += [child for child in node if type(child) in _CONTAINERS]
        level = below


def _has_nul(value: str) -> bool:
    return "\x00" in value


def _check_strings(value: object, bad: Callable[[str], bool], what: str) -> None:
    """Every string and member name, iteratively (depth is bounded already)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is str:
            if bad(node):
                raise _invalid(f"a string holds {what}")
        elif type(node) is dict:
            for name in node:
                if bad(name):
                    raise _invalid(f"a member name holds {what}")
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)


def loads(data: bytes) -> object:
    """Parse I-JSON bytes, or raise ``invalid_json`` with one sentence."""
    if data[:3] == b"\xef\xbb\xbf":
        raise _invalid("the body starts with a byte order mark")
    try:
        text = bytes(data).decode("utf-8")  # strict: no surrogates, no overlongs
    except UnicodeDecodeError as exc:
        raise _invalid(f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise _invalid(f"nesting is deeper than {MAX_DEPTH}") from None
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    # Nesting can't exceed the number of brackets: skip the walk when few.
    check_depth = text.count("[") + text.count("{") > MAX_DEPTH
    check_surrogates = _may_hold_surrogate_escape(text)
    if check_depth:
        _check_depth(value)
    if check_surrogates:
        _check_strings(value, _has_lone_surrogate, "a lone surrogate")
    # A raw NUL is not JSON, so only the escape can make one; the text also matches
    # an escaped backslash followed by "u0000", so the walk decides.
    if "\\u0000" in text:
        _check_strings(value, _has_nul, "U+0000")
    return value


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON; refuses NaN/Infinity so we never emit what we refuse."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )
