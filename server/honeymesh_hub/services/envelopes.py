"""A publish's envelopes, checked one by one in the protocol's order (PROTOCOL.md 6):
validation_failed (the envelope), foreign_key, invalid_envelope_signature, duplicate,
then the payload's validation_failed, too_broad, reserved_range. Each refusal points at
what it refuses; a refused envelope never fails another."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from honeymesh_client.protocol import dsse, ijson
from honeymesh_client.protocol.errors import ProtocolError
from honeymesh_client.protocol.keys import is_keyid

from ..callers import NodeCaller
from ..keydirectory import KeyDirectory
from ..store import signals as signal_store
from ..store.signals import SignalRow
from ..validation import Refusal, Signal, validate_signal


class KeyContext(Protocol):
    """What checking envelopes needs of a publish: the keys and the hub's time."""

    @property
    def directory(self) -> KeyDirectory: ...

    @property
    def now(self) -> datetime: ...


@dataclass(slots=True)
class Pending:
    """Accepted so far: awaiting the store's verdict (stored or duplicate)."""

    index: int
    row: SignalRow


@dataclass(slots=True)
class Batch:
    results: list[dict[str, Any] | None]
    pending: list[Pending] = field(default_factory=list)
    refused_payloads: list[tuple[int, Refusal, uuid.UUID | None]] = field(default_factory=list)


def refusal(signal_id: str | None, code: str, detail: str, pointer: str) -> dict[str, Any]:
    """A refused envelope's result; every refusal points at what it refuses."""
    error = {"code": code, "detail": detail, "pointer": pointer}
    return {"id": signal_id, "status": "rejected", "error": error}


def _payload_id(payload: bytes) -> uuid.UUID | None:
    """The id a refused payload claims, to tell a retry (duplicate) from a bad signal."""
    try:
        obj = ijson.loads(payload)
        return uuid.UUID(obj["id"]) if isinstance(obj, dict) else None
    except (ProtocolError, KeyError, TypeError, ValueError, AttributeError):
        return None


async def _usable_key(ctx: KeyContext, caller: NodeCaller, keyid: str) -> bytes | None:
    """The caller's key with this id, current or in its grace period (else foreign).

    A keyid that is not 64 lowercase hex is foreign without any lookup (PROTOCOL.md 6
    r2): nothing a sender makes up reaches the key directory or its cache.
    """
    if keyid == caller.keyid:
        return caller.identity.public_key
    if not is_keyid(keyid):
        return None
    found = await ctx.directory.get(keyid)
    if found is None or found.node_id != caller.node_id or not found.key_usable(ctx.now):
        return None
    return found.public_key


def _row(signal: Signal, caller: NodeCaller, keyid: str, payload: bytes, sig: bytes) -> SignalRow:
    mesh = signal.share == "mesh"
    tenant_id = caller.tenant_id
    return SignalRow(
        signal_uuid=signal.id,
        keyid=keyid,
        indicator_type=signal.indicator.type,
        indicator_value=signal.indicator.value,
        network=signal.indicator.network,
        scope="mesh" if mesh else "tenant",
        scope_tenant_id=None if mesh else tenant_id,
        scope_key="mesh" if mesh else str(tenant_id),
        payload=payload,
        sig=sig,
        scenario=signal.scenario,
        confidence=signal.confidence,
        ttl_seconds=signal.ttl_seconds,
        observed_at=signal.observed_at,
    )


async def check_envelopes(ctx: KeyContext, caller: NodeCaller, envelopes: Sequence[Any]) -> Batch:
    batch = Batch(results=[None] * len(envelopes))
    seen: set[uuid.UUID] = set()
    for i, obj in enumerate(envelopes):
        at = f"/envelopes/{i}"
        try:
            env = dsse.parse_envelope(obj)
        except ProtocolError as exc:
            batch.results[i] = refusal(None, exc.code, exc.detail, at + (exc.pointer or ""))
            continue
        public_key = await _usable_key(ctx, caller, env.keyid)
        if public_key is None:
            batch.results[i] = refusal(
                None,
                "foreign_key",
                "The keyid is not a current key of the publishing node.",
                at + "/signatures/0/keyid",
            )
            continue
        try:
            payload = dsse.verify_envelope(env, public_key)
        except ProtocolError as exc:
            batch.results[i] = refusal(None, exc.code, exc.detail, at + "/signatures/0/sig")
            continue
        outcome = validate_signal(payload, caller_node_id=caller.node_id, now=ctx.now)
        if isinstance(outcome, Refusal):
            batch.refused_payloads.append((i, outcome, _payload_id(payload)))
            continue
        if outcome.id in seen:
            batch.results[i] = {"id": str(outcome.id), "status": "duplicate"}
            continue
        seen.add(outcome.id)
        batch.pending.append(Pending(i, _row(outcome, caller, env.keyid, payload, env.sig)))
    return batch


async def refuse_payloads(conn: Any, caller: NodeCaller, batch: Batch) -> None:
    """Refused payloads whose (node, id) is already stored answer `duplicate` (it comes
    first in the protocol's order); the rest keep their refusal."""
    claimed = [pid for _, _, pid in batch.refused_payloads if pid is not None]
    stored = await signal_store.stored_ids(conn, caller.node_id, claimed) if claimed else set()
    for i, refused, pid in batch.refused_payloads:
        if pid is not None and pid in stored:
            batch.results[i] = {"id": str(pid), "status": "duplicate"}
        else:
            batch.results[i] = refusal(
                str(pid) if pid else None,
                refused.code,
                refused.detail,
                f"/envelopes/{i}/payload{refused.pointer}",
            )
