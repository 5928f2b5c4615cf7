"""Which node holds which key, cached per process, and the bound on the credential
lookups of a source past the failed-auth limit.

Neither touches the request or the app state: auth.py hands them keyids and source
addresses, admission.py marks the flooding sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from uuid import UUID

from honeymesh_client.protocol.keys import is_keyid

from .entitlements import NodeIdentity
from .store import identity as identity_store


class KeyDirectory:
    """keyid -> NodeIdentity, cached per process for at most `ttl` seconds.

    The cache is what makes a revoke or a PATCH reach every replica "within 5 s"
    (PROTOCOL.md section 4) without a database round trip on every request. It is an
    LRU of at most `size` entries: misses are cached too (a flood of random keyids
    costs one lookup each, then evicts only the least recently used), and callers
    hand it only well-formed keyids, so no entry is larger than 64 characters.
    """

    def __init__(self, pool: object, ttl: float, size: int = 50_000) -> None:
        self._pool = pool
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[str, tuple[float, NodeIdentity | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, keyid: object) -> bool:
        return keyid in self._entries

    async def get(self, keyid: str) -> NodeIdentity | None:
        if not is_keyid(keyid):
            return None
        now = time.monotonic()
        hit = self._entries.get(keyid)
        if hit is not None and now - hit[0] < self._ttl:
            self._entries.move_to_end(keyid)
            return hit[1]
        async with self._pool.acquire() as conn:  # type: ignore[attr-defined]
            found = await identity_store.identity_by_keyid(conn, keyid)
        self._entries[keyid] = (now, found)
        self._entries.move_to_end(keyid)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return found

    def forget(self, keyid: str) -> None:
        self._entries.pop(keyid, None)

    def forget_node(self, node_id: UUID) -> None:
        """Drop a node's keys here at once; other replicas follow within the TTL."""
        for keyid, (_, found) in list(self._entries.items()):
            if found is not None and found.node_id == node_id:
                del self._entries[keyid]


class FailedAuthGuard:
    """Sources this process saw past the failed-auth limit, and the few credential
    lookups they may run at once: a flood of bogus credentials from them queues here
    instead of taking the database pool. Their valid credentials still pass, in turn.
    """

    def __init__(self, lookups: int = 4, remember: float = 60.0, size: int = 10_000) -> None:
        self._lookups = asyncio.Semaphore(lookups)
        self._remember = remember
        self._size = size
        self._flooding: dict[str, float] = {}

    def mark(self, source: str) -> None:
        if len(self._flooding) >= self._size:
            self._flooding.clear()
        self._flooding[source] = time.monotonic() + self._remember

    def flooding(self, source: str) -> bool:
        until = self._flooding.get(source)
        if until is not None and until <= time.monotonic():
            del self._flooding[source]
            return False
        return until is not None

    @contextlib.asynccontextmanager
    async def lookup(self, source: str) -> AsyncIterator[None]:
        """Around a credential lookup: bounded when `source` is flooding."""
        if not self.flooding(source):
            yield
            return
        async with self._lookups:
            yield
