"""Bearer, enrollment tokens and reader keys: made random, shown once, stored as a hash
(section 1)."""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = {"admin": "hma_", "reviewer": "hmr_", "enrollment": "hme_", "reader": "hmk_"}


# What new_token makes for a bearer (admin or reviewer): prefix, 43 base64url characters.
_BEARER = re.compile(r"(?:hma|hmr)_[A-Za-z0-9_-]{43}")


def well_formed_bearer(token: str) -> bool:
    """Whether `token` could be a bearer token at all (no lookup needed to refuse it)."""
    return _BEARER.fullmatch(token) is not None


# What new_token makes for a reader key (PROTOCOL.md 1 r2): the same form, `hmk_`.
_READER_KEY = re.compile(r"hmk_[A-Za-z0-9_-]{43}")


def well_formed_reader_key(key: str) -> bool:
    """Whether `key` could be a reader key at all (no lookup needed to refuse it)."""
    return _READER_KEY.fullmatch(key) is not None


def new_token(kind: str) -> str:
    """A secret of 256 random bits, URL-safe, with its kind's prefix."""
    return PREFIX[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    """SHA-256: a token carries 256 random bits, so a slow hash would buy nothing."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
