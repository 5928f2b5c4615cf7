"""The review queue's keyset `next` tokens: the order, the last row's sort key and its
id, URL-safe. Not secret and not bound to a caller: every page is filtered by the
reviewer's scope, so a token only says where to go on. Pure.
"""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from datetime import UTC, datetime, timedelta

_CURSOR_TAGS = {"reporters": b"r", "oldest": b"o"}
_CURSOR_BYTES = 1 + 8 + 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REPORTERS_MAX = 2**31 - 1  # candidates.reporters is a PostgreSQL integer (int4)


def encode_after(order: str, key: int | datetime, candidate_id: uuid.UUID) -> str:
    """The `next` token: the order, the last row's sort key and its id; URL-safe."""
    number = (key - _EPOCH) // timedelta(microseconds=1) if isinstance(key, datetime) else key
    raw = _CURSOR_TAGS[order] + struct.pack(">q", number) + candidate_id.bytes
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_after(order: str, token: str) -> tuple[int | datetime, uuid.UUID]:
    """The inverse of `encode_after` for this order; ValueError (saying why) for anything
    else, a sort key no candidate can have included, so no query sees it."""
    if not token.isascii() or len(token) != 34:
        raise ValueError("not a cursor of this queue")
    try:
        raw = base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError):
        raise ValueError("not a cursor of this queue") from None
    if (
        len(raw) != _CURSOR_BYTES
        or raw[:1] != _CURSOR_TAGS[order]
        or base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token
    ):
        raise ValueError("not a cursor of this queue (or of another order)")
    (number,) = struct.unpack(">q", raw[1:9])
    candidate_id = uuid.UUID(bytes=raw[9:])
    if order == "oldest":
        try:
            return _EPOCH + timedelta(microseconds=number), candidate_id
        except OverflowError:
            raise ValueError("its time is outside years 1 to 9999") from None
    if not 0 <= number <= REPORTERS_MAX:
        raise ValueError(f"its reporter count is outside 0..{REPORTERS_MAX}")
    return number, candidate_id
