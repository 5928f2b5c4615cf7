"""Checking a publisher's signed signal without trusting the hub (PROTOCOL.md 7, 8).

Pure: the caller fetches the envelope and the key (``GET /v1/keys/{keyid}`` for
a node, the review detail's ``public_key`` for a reviewer) and this module says
whether it holds. It fails closed: any doubt is a failed check with a reason.

What holds means, in order:
1. the key's SHA-256 is the keyid named beside the envelope (the hub can't swap
   in another key under a known id);
2. the envelope is well formed, names that keyid, and its signature over
   PAE(payloadType, payload) verifies under that key;
3. the payload is I-JSON, and its ``node_id`` is the key's node (and the node
   the hub says published it);
4. its indicator, in canonical form, is the decision's, and its ``share`` is the
   decision's scope (for ``tenant``, the key's tenant is the decision's tenant).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from .indicators import Indicator, canonical
from .protocol import ijson
from .protocol.dsse import parse_envelope, verify_envelope
from .protocol.errors import ProtocolError
from .protocol.keys import decode_public_key, keyid_of

__all__ = ["Expectation", "KeyInfo", "PublisherCheck", "check_publisher"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    keyid: str
    public_key: str  # standard base64 of the raw 32 bytes
    node_id: str
    tenant_id: str


@dataclass(frozen=True, slots=True)
class Expectation:
    """What every payload behind a decision must say."""

    indicator: Indicator
    scope: str | None = None  # "mesh" or "tenant"; None: not known, not checked
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class PublisherCheck:
    keyid: str
    node_id: str
    signature_ok: bool
    problem: str | None = None  # None when everything holds

    @property
    def ok(self) -> bool:
        return self.signature_ok and self.problem is None


def _as_uuid(value: object) -> uuid.UUID | None:
    """A node id as a UUID, so any spelling of the same id matches; None if it isn't one."""
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def check_publisher(
    envelope: object, *, keyid: str, node_id: str, key: KeyInfo | None, expect: Expectation
) -> PublisherCheck:
    def bad(problem: str, signature_ok: bool = False) -> PublisherCheck:
        return PublisherCheck(keyid, node_id, signature_ok, problem)

    if key is None:
        return bad("the hub does not know this key")
    try:
        public_raw = decode_public_key(key.public_key)
    except ValueError:
        return bad("the key is not a valid Ed25519 public key")
    if keyid_of(public_raw) != keyid:
        return bad("the key's SHA-256 is not its key id")
    try:
        env = parse_envelope(envelope)
    except ProtocolError as exc:
        return bad(f"the envelope is malformed: {exc.detail}")
    if env.keyid != keyid:
        return bad("the envelope names another key")
    try:
        payload_bytes = verify_envelope(env, public_raw)
    except ProtocolError:
        return bad("the signature does not verify")
    try:
        payload = ijson.loads(payload_bytes)
    except ProtocolError as exc:
        return bad(f"the signed payload is not I-JSON: {exc.detail}", True)
    if not isinstance(payload, dict):
        return bad("the signed payload is not a JSON object", True)
    claimed = payload.get("node_id")
    key_node = _as_uuid(key.node_id)
    if (
        key_node is None
        or _as_uuid(claimed) != key_node
        or (node_id and _as_uuid(node_id) != key_node)
    ):
        return bad(f"the payload claims node {claimed}, but the key is node {key.node_id}", True)
    ind = payload.get("indicator")
    try:
        if not isinstance(ind, dict):
            raise ValueError("no indicator")
        found = canonical(str(ind.get("type")), str(ind.get("value")))
    except ValueError:
        return bad("the payload's indicator is not valid", True)
    if found != expect.indicator:
        return bad(
            f"the payload is about {found.value}, not the decision's {expect.indicator.value}",
            True,
        )
    if expect.scope is not None:
        share = payload.get("share")
        if share != expect.scope:
            return bad(f"the payload is shared with {share}, not {expect.scope}", True)
        if expect.scope == "tenant" and expect.tenant_id and key.tenant_id != expect.tenant_id:
            return bad("the key's tenant is not the decision's tenant", True)
    return PublisherCheck(keyid, node_id, True, None)
