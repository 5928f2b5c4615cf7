"""The transparency log's pure parts on the hub (PROTOCOL.md 15 r2): the events it
logs, as the feed serves them, and the hub's signed checkpoints.

The Merkle code (RFC 9162), the signed-note format (C2SP) and the leaf bytes (RFC
8785) are the client's protocol modules, so the hub and its nodes share one copy.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from honeymesh_client.protocol import note
from honeymesh_client.protocol.tlogleaf import leaf_bytes, log_of_scope, time_text

__all__ = ["LogKey", "feed_event", "log_of_scope", "logged_event", "scope_of_log"]


def scope_of_log(log: str) -> str | None:
    """The scope key a log name stands for, or None for no log of ours."""
    if log == "mesh":
        return log
    prefix, _, tenant = log.partition(":")
    return tenant if prefix == "tenant" and tenant else None


def feed_event(
    kind: str, entry: Mapping[str, Any], reason: str | None, time: datetime
) -> dict[str, Any]:
    """A sequenced event as the feed serves it, without its `leaf` (PROTOCOL.md 8)."""
    if kind == "added":
        return {**entry, "time": time_text(time)}
    return {
        "id": entry["id"],
        "indicator": entry["indicator"],
        "reason": reason or "retracted",
        "time": time_text(time),
    }


def logged_event(
    kind: str, entry: Mapping[str, Any], reason: str | None, time: datetime, log: str, index: int
) -> tuple[bytes, str]:
    """An event's leaf, and the event as the feed serves it (PROTOCOL.md 8 r2): the
    leaf less `event`, with its `leaf` place, as compact JSON text."""
    event = feed_event(kind, entry, reason, time)
    served = json.dumps({**event, "leaf": {"log": log, "index": index}}, separators=(",", ":"))
    return leaf_bytes(event, kind), served


@dataclass(frozen=True)
class LogKey:
    """The hub's Ed25519 log key and origin; checkpoints are signed notes by it."""

    origin: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_seed(cls, origin: str, seed: bytes) -> LogKey:
        return cls(origin, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, origin: str, pem: bytes) -> LogKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the log key file must hold an Ed25519 private key (PKCS#8 PEM)")
        return cls(origin, key)

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def name(self) -> str:
        """The signer's key name: the hub's origin, as Go's sumdb names its key."""
        return self.origin

    @property
    def verifier_key(self) -> str:
        return note.verifier_key(self.name, self.public_raw)

    def verifier(self) -> note.Verifier:
        return note.parse_verifier_key(self.verifier_key)

    def origin_of(self, log: str) -> str:
        return f"{self.origin}/{log}"

    def checkpoint(self, log: str, size: int, root: bytes) -> str:
        """The signed tlog-checkpoint note of `log` at `size` with `root`."""
        text = note.checkpoint_text(note.Checkpoint(self.origin_of(log), size, root))
        return note.sign(text, self.name, self.private_key)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
