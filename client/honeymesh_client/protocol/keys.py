"""Ed25519 keys: ids, encodings, verification and the node's key file.

A node's identity is its Ed25519 key pair (PROTOCOL.md section 1). The hub
checks a signature on every request and on every signal, so public keys are
turned into ``cryptography`` objects once and cached by their raw bytes.

Encodings are strict on purpose: a public key has exactly one accepted
spelling (canonical standard base64 of the raw 32 bytes), so two spellings can
never name one key or slip past a uniqueness check.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import secrets
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "NodeKey",
    "b64decode_any",
    "b64encode",
    "decode_public_key",
    "encode_public_key",
    "keyid_of",
    "verify_ed25519",
]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# RFC 8032 section 5.1: the field prime and the curve constant d.
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
# y coordinates of the eight points of small order (orders 1, 2, 4 and 8):
# (0, 1), (0, -1), (+-sqrt(-1), 0) and the four points with y = +-_Y8.
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})

# base64 alphabets (RFC 4648 sections 4 and 5).
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


_HEX_LOWER = "0123456789abcdef"


def is_keyid(value: str) -> bool:
    """Whether `value` has the shape of a key id: 64 lowercase hex characters."""
    return len(value) == 64 and not value.strip(_HEX_LOWER)


def keyid_of(public_raw: bytes) -> str:
    """Return the key id: lowercase hex SHA-256 of the raw 32-byte key.

    The id is derived, never chosen, so a node cannot claim another's id
    (PROTOCOL.md section 1).
    """
    if len(public_raw) != PUBLIC_KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(public_raw).hexdigest()


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 section 4), as a str."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def encode_public_key(raw: bytes) -> str:
    """Standard base64 of the raw 32-byte public key (PROTOCOL.md section 1)."""
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return b64encode(raw)


def _is_valid_point(raw: bytes) -> bool:
    """Whether ``raw`` decodes to an Ed25519 point of more than small order.

    ``cryptography`` (OpenSSL) accepts any 32 bytes as a public key and only
    fails later, at verification. We refuse at the door: the encoding must be
    canonical and decode (RFC 8032 section 5.1.3), and the point must not be
    of small order, for which signatures such as (R=identity, S=0) verify
    against many messages (the check libsodium makes too).
    """
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P or y in _SMALL_ORDER_Y:  # RFC 8032 5.1.3 step 1: y < p
        return False
    # RFC 8032 5.1.3 step 2: x^2 = (y^2 - 1) / (d y^2 + 1) must be a square.
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    if x2 == 0:  # step 4: x = 0 with the sign bit set is not canonical
        return sign == 0
    return pow(x2, (_P - 1) // 2, _P) == 1  # Euler's criterion


def decode_public_key(text: str) -> bytes:
    """Parse a public key as it travels: canonical standard base64 of 32 bytes.

    Raises ValueError for anything else: other alphabets, missing padding,
    whitespace, non-zero trailing bits, another length, or bytes that are
    not a usable Ed25519 point.
    """
    if not isinstance(text, str) or len(text) != 44 or not text.isascii():
        raise ValueError("a public key is the standard base64 of 32 bytes")
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        raise ValueError("a public key is the standard base64 of 32 bytes") from None
    if len(raw) != PUBLIC_KEY_SIZE or b64encode(raw) != text:
        raise ValueError("a public key is the canonical standard base64 of 32 bytes")
    if not _is_valid_point(raw):
        raise ValueError("not a valid Ed25519 public key")
    return raw


def b64decode_any(text: str) -> bytes:
    """Decode base64 in the standard or the URL-safe alphabet, strictly.

    DSSE allows either alphabet (PROTOCOL.md section 6). Padding is optional:
    URL-safe producers usually drop it (Go's ``RawURLEncoding``), standard
    ones keep it, and refusing either would break honest nodes. Everything
    else is refused with ValueError, so each byte string has at most one
    accepted spelling per alphabet and padding choice: mixing the alphabets,
    whitespace or other characters, padding that is present but wrong, and
    non-zero trailing bits (RFC 4648 section 3.5). The signature covers the
    decoded bytes, so this strictness is about one reading, not integrity.
    """
    if not text.isascii():
        raise ValueError("not base64: non-ASCII characters")
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise ValueError("not base64: mixes the standard and URL-safe alphabets")
        text = text.translate(_URLSAFE_TO_STANDARD)
    remainder = len(text) % 4
    if remainder:
        if remainder == 1 or "=" in text:
            raise ValueError("not base64: bad length or padding")
        text += "=" * (4 - remainder)
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    # strict_mode does not look at the unused low bits of the last character.
    if text.endswith("=") and b64encode(data) != text:
        raise ValueError("not base64: non-zero trailing bits")
    return data


@lru_cache(maxsize=4096)
def _public_key(public_raw: bytes) -> Ed25519PublicKey:
    """Cache key objects: building one costs more than the lookup (hot path)."""
    return Ed25519PublicKey.from_public_bytes(public_raw)


def verify_ed25519(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_raw``'s Ed25519 signature of ``message``."""
    if len(signature) != SIGNATURE_SIZE or len(public_raw) != PUBLIC_KEY_SIZE:
        return False
    try:
        _public_key(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class NodeKey:
    """A node's Ed25519 private key, with its public half and key id.

    The private bytes never appear in ``repr`` or in an error message.
    """

    __slots__ = ("_keyid", "_private", "_public_b64", "_public_raw")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self._public_raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._public_b64 = encode_public_key(self._public_raw)
        self._keyid = keyid_of(self._public_raw)

    def __repr__(self) -> str:
        return f"NodeKey(keyid={self.keyid!r})"

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> NodeKey:
        """Build from the raw 32-byte RFC 8032 private key (seed)."""
        if len(raw) != 32:
            raise ValueError("an Ed25519 private key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    @property
    def public_raw(self) -> bytes:
        return self._public_raw

    @property
    def public_b64(self) -> str:
        return self._public_b64

    @property
    def keyid(self) -> str:
        return self._keyid

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def private_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: the file's protection is its mode, 0600."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def load(cls, path: Path) -> NodeKey:
        """Read a key file written by :meth:`save`.

        On POSIX a file that group or others may read, write or run is
        refused with PermissionError, as ssh does: the key may already have
        leaked, and the operator must decide. The mode is read from the open
        descriptor, so the file checked is the file read.
        """
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            if os.name == "posix":
                mode = os.fstat(f.fileno()).st_mode & 0o777
                if mode & 0o077:
                    raise PermissionError(
                        f"key file {path} has mode {mode:04o}; it must be readable by its "
                        f"owner only (chmod 600 {path})"
                    )
            data = f.read()
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ValueError(f"key file {path} is not an unencrypted PEM private key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"key file {path} does not hold an Ed25519 key")
        return cls(private)

    def save(self, path: Path, *, force: bool = False) -> None:
        """Write the key file atomically, readable by its owner only (0600).

        The bytes go to a fresh temporary file in the same directory, created
        with O_EXCL and mode 0600 (never a moment with wider permissions),
        flushed with fsync, then moved into place: a crash leaves either the
        old file or the new one, never half a key. Without ``force`` an
        existing file is kept and FileExistsError raised; the move is then
        ``link``, which refuses atomically even against a concurrent writer.
        """
        path = Path(path)
        if not force and os.path.lexists(path):
            raise FileExistsError(f"key file {path} exists; refusing to overwrite it")
        directory = path.parent
        tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(tmp, flags, 0o600)
        try:
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)  # whatever the umask
                os.write(fd, self.private_pem())
                os.fsync(fd)
            finally:
                os.close(fd)
            if force:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise FileExistsError(
                        f"key file {path} exists; refusing to overwrite it"
                    ) from None
                except OSError:
                    # A file system without hard links: best effort.
                    if os.path.lexists(path):
                        raise FileExistsError(
                            f"key file {path} exists; refusing to overwrite it"
                        ) from None
                    os.replace(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories can't be opened."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
