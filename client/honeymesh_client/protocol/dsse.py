"""DSSE envelopes for signals (PROTOCOL.md section 6).

A signal is signed by its node inside a DSSE envelope
(https://github.com/secure-systems-lab/dsse/blob/master/envelope.md), over
PAE(payloadType, payload) (https://github.com/secure-systems-lab/dsse/blob/master/protocol.md),
so the hub can keep the exact payload bytes and any node can check them later.

Shaped after sigstore-python's ``sigstore/dsse``: :func:`verify_envelope` is
the only way to the payload as verified bytes, and it fails closed.
:class:`Envelope` holds the payload before verification; treat it as
untrusted.

Decisions (the protocol is silent on them):

- An envelope with a member other than ``payloadType``, ``payload`` and
  ``signatures``, or a signature object with a member other than ``keyid``
  and ``sig``, is refused (``validation_failed``, pointer on the member):
  one reading for every party, nothing the signature does not cover.
- ``keyid`` must be a string; whether it names a key of the caller is the
  hub's ``foreign_key`` check, not a shape check, and a keyid that is not
  64 lowercase hex is ``foreign_key`` before any lookup (PROTOCOL.md 6 r2).
- Checks run in member order ``payloadType``, ``payload``, ``signatures``;
  the first failure is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError
from .keys import NodeKey, b64decode_any, b64encode, verify_ed25519
from .pointers import pointer as json_pointer

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "SIGNAL_PAYLOAD_TYPE",
    "Envelope",
    "build_envelope",
    "pae",
    "parse_envelope",
    "verify_envelope",
]

SIGNAL_PAYLOAD_TYPE = "application/vnd.honeymesh.signal+json"
MAX_PAYLOAD_BYTES = 8192  # PROTOCOL.md section 6: the decoded payload is at most 8 KiB
# Longest base64 text that can decode to MAX_PAYLOAD_BYTES: refuse longer text
# before decoding it.
_MAX_PAYLOAD_TEXT = (MAX_PAYLOAD_BYTES + 2) // 3 * 4

_ENVELOPE_MEMBERS = frozenset(("payloadType", "payload", "signatures"))
_SIGNATURE_MEMBERS = frozenset(("keyid", "sig"))


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding:
    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, lengths being the
    ASCII decimal byte counts (DSSE protocol.md, "Signature definition")."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def build_envelope(
    key: NodeKey, payload: bytes, payload_type: str = SIGNAL_PAYLOAD_TYPE
) -> dict[str, object]:
    """Sign ``payload`` and wrap it, in standard base64 with padding."""
    return {
        "payloadType": payload_type,
        "payload": b64encode(payload),
        "signatures": [
            {"keyid": key.keyid, "sig": b64encode(key.sign(pae(payload_type, payload)))}
        ],
    }


@dataclass(frozen=True, slots=True)
class Envelope:
    """A well-formed envelope whose signature has NOT been checked yet."""

    payload_type: str
    payload: bytes
    keyid: str
    sig: bytes


def _refuse(detail: str, pointer: str) -> ProtocolError:
    return ProtocolError("validation_failed", detail, pointer)


def parse_envelope(obj: object, payload_type: str = SIGNAL_PAYLOAD_TYPE) -> Envelope:
    """Check the envelope's shape; ``validation_failed`` with a pointer
    relative to the envelope on the first thing wrong."""
    if not isinstance(obj, dict):
        raise _refuse("an envelope is a JSON object", "")
    for name in obj:
        if name not in _ENVELOPE_MEMBERS:
            raise _refuse(f"unknown envelope member {name!r}", json_pointer(str(name)))

    found_type = obj.get("payloadType")
    if not isinstance(found_type, str):
        raise _refuse("payloadType must be a string", "/payloadType")
    if found_type != payload_type:
        raise _refuse(f"payloadType must be {payload_type!r}", "/payloadType")

    text = obj.get("payload")
    if not isinstance(text, str):
        raise _refuse("payload must be a base64 string", "/payload")
    if len(text) > _MAX_PAYLOAD_TEXT:
        raise _refuse(f"the payload is larger than {MAX_PAYLOAD_BYTES} bytes", "/payload")
    try:
        payload = b64decode_any(text)
    except ValueError:
        raise _refuse("payload is not base64", "/payload") from None
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _refuse(f"the payload is larger than {MAX_PAYLOAD_BYTES} bytes", "/payload")

    signatures = obj.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise _refuse("signatures must be a list of exactly one signature", "/signatures")
    entry = signatures[0]
    if not isinstance(entry, dict):
        raise _refuse("a signature is a JSON object", "/signatures/0")
    for name in entry:
        if name not in _SIGNATURE_MEMBERS:
            raise _refuse(
                f"unknown signature member {name!r}", json_pointer("signatures", "0", str(name))
            )
    keyid = entry.get("keyid")
    if not isinstance(keyid, str):
        raise _refuse("keyid must be a string", "/signatures/0/keyid")
    sig_text = entry.get("sig")
    if not isinstance(sig_text, str):
        raise _refuse("sig must be a base64 string", "/signatures/0/sig")
    try:
        sig = b64decode_any(sig_text)
    except ValueError:
        raise _refuse("sig is not base64", "/signatures/0/sig") from None
    return Envelope(payload_type=found_type, payload=payload, keyid=keyid, sig=sig)


def verify_envelope(env: Envelope, public_raw: bytes) -> bytes:
    """Return the payload bytes if ``public_raw`` signed PAE(type, payload);
    else ``invalid_envelope_signature``. The caller picks the key by
    ``env.keyid`` and decides whether that key may speak for the signal."""
    if not verify_ed25519(public_raw, env.sig, pae(env.payload_type, env.payload)):
        raise ProtocolError(
            "invalid_envelope_signature", "the envelope's signature does not verify"
        )
    return env.payload
