"""The key directory is an LRU with a size: no flood of keyids grows it past its bound."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

from honeymesh_hub.keydirectory import KeyDirectory


class _Pool:
    """Counts lookups; every keyid is unknown."""

    def __init__(self) -> None:
        self.lookups = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        self.lookups += 1
        yield _Conn()


class _Conn:
    async def fetchrow(self, *_: Any) -> None:
        return None


async def test_the_directory_evicts_the_least_recently_used() -> None:
    pool = _Pool()
    directory = KeyDirectory(pool, ttl=60.0, size=100)
    keyids = [f"{i:064x}" for i in range(1000)]
    for keyid in keyids:
        assert await directory.get(keyid) is None
    assert len(directory) == 100
    assert pool.lookups == 1000
    await directory.get(keyids[-1])  # cached
    assert pool.lookups == 1000
    await directory.get(keyids[0])  # evicted long ago
    assert pool.lookups == 1001


async def test_malformed_keyids_are_never_looked_up_nor_cached() -> None:
    pool = _Pool()
    directory = KeyDirectory(pool, ttl=60.0, size=100)
    for keyid in ("x" * 1_000_000, "A" * 64, "", "a\x00" * 32):
        assert await directory.get(keyid) is None
    assert (pool.lookups, len(directory)) == (0, 0)
    directory.forget_node(uuid4())
