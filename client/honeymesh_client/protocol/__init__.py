"""The HoneyMesh wire protocol: pure code, shared by nodes and the hub.

The hub verifies with the very functions nodes sign with. Nothing here does
I/O except reading and writing a node's key file (:class:`NodeKey`).

Modules: :mod:`.blocklists` (block lists as firewalls load them: the node's
``pull --format`` files and the hub's ``/v1/blocklist``, with their ETag),
:mod:`.dsse` (signed envelopes), :mod:`.errors`, :mod:`.ijson` (I-JSON,
U+0000), :mod:`.indicators` (canonical addresses), :mod:`.keys`,
:mod:`.pointers`, :mod:`.signing` (RFC 9421 requests), :mod:`.times` (RFC 3339).
"""

from . import blocklists, dsse, errors, ijson, indicators, keys, pointers, signing, times
from .dsse import (
    SIGNAL_PAYLOAD_TYPE,
    Envelope,
    build_envelope,
    pae,
    parse_envelope,
    verify_envelope,
)
from .errors import ProtocolError
from .keys import (
    NodeKey,
    b64decode_any,
    decode_public_key,
    encode_public_key,
    keyid_of,
    verify_ed25519,
)
from .signing import (
    SignatureInput,
    check_components,
    check_content_digest,
    check_freshness,
    content_digest,
    parse_signature_headers,
    requires_digest,
    sign_request,
    signature_base,
    split_request_target,
    verify_signature,
)

__all__ = [
    "SIGNAL_PAYLOAD_TYPE",
    "Envelope",
    "NodeKey",
    "ProtocolError",
    "SignatureInput",
    "b64decode_any",
    "blocklists",
    "build_envelope",
    "check_components",
    "check_content_digest",
    "check_freshness",
    "content_digest",
    "decode_public_key",
    "dsse",
    "encode_public_key",
    "errors",
    "ijson",
    "indicators",
    "keyid_of",
    "keys",
    "pae",
    "parse_envelope",
    "parse_signature_headers",
    "pointers",
    "requires_digest",
    "sign_request",
    "signature_base",
    "signing",
    "split_request_target",
    "times",
    "verify_ed25519",
    "verify_envelope",
    "verify_signature",
]
