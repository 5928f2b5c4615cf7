"""Bearer and enrollment tokens: made random, shown once, stored as a hash (section 1)."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = {"admin": "hma_", "reviewer": "hmr_", "enrollment": "hme_"}


def new_token(kind: str) -> str:
    """A secret of 256 random bits, URL-safe, with its kind's prefix."""
    return PREFIX[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    """SHA-256: a token carries 256 random bits, so a slow hash would buy nothing."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
