"""Feed cursors: authenticated, bound to their node, carrying the visibility epoch."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import uuid

import pytest

from honeymesh_hub.cursor import CursorError, Position, decode, encode

KEY = b"k" * 32
NODE = uuid.uuid4()


@pytest.mark.parametrize(
    "position",
    [
        Position("delta", 2**40, 7, epoch=3),
        Position("snapshot", 99, 0, uuid.uuid4(), 2**32 - 1),
        Position("snapshot", 1, 0, None, 0),
    ],
)
def test_round_trip_url_safe(position: Position) -> None:
    text = encode(position, NODE, KEY)
    assert text.replace("-", "").replace("_", "").isalnum()
    assert decode(text, NODE, KEY) == position


def test_a_version_1_cursor_reads_as_epoch_0() -> None:
    body = struct.pack(">BBQQ", 1, 2, 1234, 5)
    mac = hmac.new(KEY, NODE.bytes + body, hashlib.sha256).digest()[:16]
    text = base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()
    assert decode(text, NODE, KEY) == Position("delta", 1234, 5, epoch=0)


def test_the_epoch_is_authenticated() -> None:
    text = encode(Position("delta", 10, 1, epoch=1), NODE, KEY)
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw[21] ^= 1  # the last byte of the epoch
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(CursorError):
        decode(forged, NODE, KEY)
    with pytest.raises(CursorError):
        decode(text, uuid.uuid4(), KEY)
