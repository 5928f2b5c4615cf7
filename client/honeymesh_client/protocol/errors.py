"""The one exception the wire-protocol code raises.

Every refusal carries the machine-readable ``code`` of PROTOCOL.md (sections
2, 3 and 6), so the hub maps it to problem+json without guessing and the node
prints ``detail`` as its one sentence. ``detail`` never holds a secret or a
key's private half: it may be shown to the caller.
"""

from __future__ import annotations

__all__ = ["ProtocolError"]


class ProtocolError(Exception):
    """A message broke the wire protocol.

    Codes: ``missing_signature``, ``invalid_signature``, ``signature_expired``,
    ``digest_mismatch`` (RFC 9421 signing); ``validation_failed`` and
    ``invalid_envelope_signature`` (DSSE); ``invalid_json`` (I-JSON).
    ``pointer`` is set for DSSE ``validation_failed`` only: an RFC 6901 JSON
    pointer relative to the envelope (``""`` is the envelope itself).
    """

    code: str
    detail: str
    pointer: str | None

    def __init__(self, code: str, detail: str, pointer: str | None = None) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.pointer = pointer

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.detail!r}, pointer={self.pointer!r})"
