"""Opaque, authenticated feed cursors (PROTOCOL.md section 8). Pure.

A cursor is a position in the feed log plus what kind of page comes next:

    snapshot  (boundary xid, last candidate id)  - paging the active set
    delta     (xid, seq)                         - everything up to here was served

Both carry the visibility epoch of the node's tenant they were issued under (PROTOCOL.md
8 r2): a cursor of an older epoch is answered with a snapshot.

It travels as URL-safe base64 (`A-Za-z0-9_-`) of the fields and a MAC over them and
the node's id, keyed by the hub's shared secret: a forged, altered or borrowed
cursor fails the MAC and answers 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass

_VERSION = 2  # version 1 had no epoch: read as epoch 0
_SNAPSHOT = 1
_DELTA = 2
_MAC_BYTES = 16
# version, kind, xid, seq-or-unused, epoch, then 16 bytes of candidate id (snapshot only)
_HEAD = struct.Struct(">BBQQI")
_HEAD_V1 = struct.Struct(">BBQQ")


class CursorError(ValueError):
    """The cursor was not made by this hub for this node."""


@dataclass(frozen=True, slots=True)
class Position:
    """`snapshot`: paging the active set as of the sequenced position (`xid`, `seq`),
    after candidate `after`.
    `delta`: every event at or before (`xid`, `seq`) was served."""

    kind: str
    xid: int
    seq: int = 0
    after: uuid.UUID | None = None
    epoch: int = 0


def encode(position: Position, node_id: uuid.UUID, key: bytes) -> str:
    kind = _SNAPSHOT if position.kind == "snapshot" else _DELTA
    body = _HEAD.pack(_VERSION, kind, position.xid, position.seq, position.epoch)
    if position.kind == "snapshot":
        body += (position.after or uuid.UUID(int=0)).bytes
    mac = hmac.new(key, node_id.bytes + body, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode("ascii")


def decode(text: str, node_id: uuid.UUID, key: bytes) -> Position:
    if not text or len(text) > 96 or not text.isascii():
        raise CursorError("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise CursorError("malformed cursor") from None
    if len(raw) < _HEAD_V1.size + _MAC_BYTES:
        raise CursorError("malformed cursor")
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    expected = hmac.new(key, node_id.bytes + body, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise CursorError("this cursor was not issued to this node")
    version = body[0]
    if version == _VERSION:
        _, kind, xid, seq, epoch = _HEAD.unpack_from(body)
        head = _HEAD.size
    elif version == 1:
        _, kind, xid, seq = _HEAD_V1.unpack_from(body)
        epoch, head = 0, _HEAD_V1.size
    else:
        raise CursorError("unknown cursor version")
    if kind not in (_SNAPSHOT, _DELTA):
        raise CursorError("unknown cursor version")
    if kind == _SNAPSHOT:
        if len(body) != head + 16:
            raise CursorError("malformed cursor")
        after = uuid.UUID(bytes=body[head:])
        return Position("snapshot", xid, seq, None if after.int == 0 else after, epoch)
    if len(body) != head:
        raise CursorError("malformed cursor")
    return Position("delta", xid, seq, epoch=epoch)
