"""C2SP signed notes and tlog checkpoints, Ed25519 only (PROTOCOL.md section 15).

Pure. A transparency-log checkpoint is a signed note
(https://c2sp.org/signed-note) whose text is in the tlog-checkpoint format
(https://c2sp.org/tlog-checkpoint): the origin line, the tree size, the
base64 root hash and optional extension lines. The hub signs it; nodes cosign
it with key names ``node-<node_id>``.

The rules follow Go's ``golang.org/x/mod/sumdb/note``, which the interop test
checks this module against: a note is UTF-8 with no control characters but
newline, its text ends in a newline and is separated from the signature lines
by the note's last blank line; at most 100 signature lines; a signature from a
known key that does not verify fails the whole note, while signatures from
unknown keys are kept aside, not trusted.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from honeymesh_client.protocol.keys import PUBLIC_KEY_SIZE, b64encode, verify_ed25519

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteError",
    "OpenedNote",
    "Signature",
    "Verifier",
    "add_signature",
    "checkpoint_text",
    "key_hash",
    "open_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "sign",
    "signature_line",
    "split_note",
    "verifier_key",
]

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100
KEY_HASH_SIZE = 4
ROOT_SIZE = 32
SIG_PREFIX = "\u2014 "  # em dash and a space
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_HEX8 = re.compile(r"[0-9a-f]{8}", re.ASCII)
_MAX_SIZE = 2**63 - 1  # Go's tlog sizes are int64


class NoteError(ValueError):
    """A malformed note, key or checkpoint, or a note that does not verify."""


@dataclass(frozen=True, slots=True)
class Verifier:
    """A parsed verifier key: the key name, its 4-byte key hash and the raw key."""

    name: str
    key_hash: bytes
    public_raw: bytes


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key name, 4-byte key hash and the signature bytes."""

    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, newline included."""
        return signature_line(self.name, self.key_hash, self.signature)


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A verified note: its text, the signatures that verified (in note order)
    and those from unknown keys (unverified, kept for the caller)."""

    text: str
    verified: tuple[Signature, ...]
    unknown: tuple[Signature, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The key names of the verified signatures."""
        return tuple(s.name for s in self.verified)


def _check_name(name: str) -> None:
    # Go's isValidName: non-empty, no white space, no "+".
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"invalid key name {name!r}")
    _check_chars(name)


def _check_chars(text: str) -> None:
    """Valid UTF-8 (no lone surrogates) and no ASCII control but newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("not valid UTF-8") from None
    if any(c < " " and c != "\n" for c in text):
        raise NoteError("control character in note")


def _b64decode(text: str) -> bytes:
    """Strict standard base64 with padding: one spelling per byte string."""
    if not text.isascii():
        raise NoteError("not base64")
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        raise NoteError("not base64") from None
    if b64encode(raw) != text:
        raise NoteError("not canonical base64")
    return raw


def _public_raw(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def key_hash(name: str, public_raw: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public)[:4]: the Ed25519 key hash."""
    if len(public_raw) != PUBLIC_KEY_SIZE:
        raise NoteError("an Ed25519 public key is 32 bytes")
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_raw)
    return digest.digest()[:KEY_HASH_SIZE]


def verifier_key(name: str, public_raw: bytes) -> str:
    """``<name>+<hex key hash>+<base64(0x01 || public)>``."""
    _check_name(name)
    h = key_hash(name, public_raw)
    return f"{name}+{h.hex()}+{b64encode(bytes([ALG_ED25519]) + public_raw)}"


def parse_verifier_key(text: str) -> Verifier:
    """Parse an Ed25519 verifier key, checking its key hash."""
    name, sep1, rest = text.partition("+")
    hash_hex, sep2, key_b64 = rest.partition("+")
    if not sep1 or not sep2:
        raise NoteError("a verifier key is name+hash+key")
    _check_name(name)
    if not _HEX8.fullmatch(hash_hex):
        raise NoteError("a verifier key's hash is 8 lowercase hex digits")
    key = _b64decode(key_b64)
    if len(key) != 1 + PUBLIC_KEY_SIZE or key[0] != ALG_ED25519:
        raise NoteError("not an Ed25519 verifier key")
    public_raw = key[1:]
    expected = key_hash(name, public_raw)
    if expected.hex() != hash_hex:
        raise NoteError("verifier key hash does not match the key")
    return Verifier(name, expected, public_raw)


def signature_line(name: str, key: bytes, signature: bytes) -> str:
    """``— <name> <base64(key hash || signature)>`` and a newline; `key` is the
    raw 32-byte public key or its 4-byte key hash."""
    _check_name(name)
    if len(key) == PUBLIC_KEY_SIZE:
        key = key_hash(name, key)
    elif len(key) != KEY_HASH_SIZE:
        raise NoteError("want a 32-byte public key or a 4-byte key hash")
    return f"{SIG_PREFIX}{name} {b64encode(key + signature)}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    _check_chars(text)
    if any(line.startswith("\u2014") for line in text.split("\n")):
        raise NoteError("note text has a line starting with an em dash")


def _sign_text(text: str, name: str, private_key: Ed25519PrivateKey) -> Signature:
    _check_name(name)
    sig = private_key.sign(text.encode("utf-8"))
    return Signature(name, key_hash(name, _public_raw(private_key)), sig)


def sign(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note: `text`, a blank line and `name`'s signature line."""
    _check_text(text)
    return text + "\n" + _sign_text(text, name, private_key).line()


def _parse_line(line: str) -> Signature:
    if not line.startswith(SIG_PREFIX):
        raise NoteError("malformed note: not a signature line")
    name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
    _check_name(name)
    raw = _b64decode(b64) if b64 else b""
    if len(raw) <= KEY_HASH_SIZE:
        raise NoteError("malformed note: short signature")
    return Signature(name, raw[:KEY_HASH_SIZE], raw[KEY_HASH_SIZE:])


def split_note(note: str | bytes) -> tuple[str, tuple[Signature, ...]]:
    """Split a note into its text and its signature lines, verifying nothing.

    Exact duplicate lines are dropped; more than 100 lines is malformed."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("not valid UTF-8") from None
    _check_chars(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("malformed note: no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    sigs: dict[str, Signature] = {}
    for line in lines:
        sigs.setdefault(line, _parse_line(line))
    return text, tuple(sigs.values())


def _verifier_map(verifiers: Iterable[Verifier]) -> dict[tuple[str, bytes], Verifier | None]:
    """Verifiers by (name, key hash); None marks two different keys sharing both."""
    known: dict[tuple[str, bytes], Verifier | None] = {}
    for v in verifiers:
        k = (v.name, v.key_hash)
        if k in known and known[k] != v:
            known[k] = None
        else:
            known.setdefault(k, v)
    return known


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> OpenedNote:
    """Verify a signed note against known verifiers.

    Raises NoteError if the note is malformed, if a signature from a known key
    does not verify, or if no known key signed it. A known key's repeated
    signatures count once (the first); unknown keys' are returned unverified.
    """
    text, sigs = split_note(note)
    known = _verifier_map(verifiers)
    message = text.encode("utf-8")
    verified: list[Signature] = []
    unknown: list[Signature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in sigs:
        k = (sig.name, sig.key_hash)
        if k not in known:
            unknown.append(sig)
            continue
        v = known[k]
        if v is None:
            raise NoteError(f"ambiguous key {sig.name}+{sig.key_hash.hex()}")
        if k in seen:
            continue
        seen.add(k)
        if not verify_ed25519(v.public_raw, sig.signature, message):
            raise NoteError(f"invalid signature for key {sig.name}+{sig.key_hash.hex()}")
        verified.append(sig)
    if not verified:
        raise NoteError("note has no verifiable signatures")
    return OpenedNote(text, tuple(verified), tuple(unknown))


def add_signature(note: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Append `name`'s signature (a cosignature) to a signed note, replacing
    any earlier one by the same key. Verifies none of the existing ones: open
    the note with :func:`open_note` first."""
    text, sigs = split_note(note)
    new = _sign_text(text, name, private_key)
    kept = [s for s in sigs if (s.name, s.key_hash) != (new.name, new.key_hash)]
    if len(kept) + 1 > MAX_SIGNATURES:
        raise NoteError(f"a note has at most {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(s.line() for s in kept) + new.line()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def _check_line(line: str, what: str) -> None:
    if not line or "\n" in line:
        raise NoteError(f"checkpoint {what} must be one non-empty line")
    _check_chars(line)
    if line.startswith("\u2014"):
        raise NoteError(f"checkpoint {what} starts with an em dash")


def checkpoint_text(cp: Checkpoint) -> str:
    """``<origin>\\n<size>\\n<base64 root>\\n`` and the extension lines."""
    _check_line(cp.origin, "origin")
    if not 0 <= cp.size <= _MAX_SIZE:
        raise NoteError("checkpoint size out of range")
    if len(cp.root) != ROOT_SIZE:
        raise NoteError("a checkpoint root is 32 bytes")
    for ext in cp.extensions:
        _check_line(ext, "extension")
    return "".join(
        f"{line}\n" for line in (cp.origin, str(cp.size), b64encode(cp.root), *cp.extensions)
    )


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly (a decimal size without leading zeros,
    a 32-byte root, non-empty origin and extension lines)."""
    if not text.endswith("\n"):
        raise NoteError("a checkpoint ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has origin, size and root lines")
    origin, size_text, root_text, *extensions = lines
    if len(size_text) > 19 or not _DECIMAL.fullmatch(size_text) or int(size_text) > _MAX_SIZE:
        raise NoteError(f"bad checkpoint size {size_text!r}")
    root = _b64decode(root_text)
    cp = Checkpoint(origin, int(size_text), root, tuple(extensions))
    checkpoint_text(cp)  # the remaining line checks
    return cp
