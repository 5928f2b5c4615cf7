"""Which node holds which key and which tenant a reader key reads, cached per process,
and the bound on the credential lookups of a source past the failed-auth limit.

Neither touches the request or the app state: auth.py hands them keyids and source
addresses, admission.py marks the flooding sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from uuid import UUID

from honeymesh_client.protocol.keys import is_keyid

from .entitlements import NodeIdentity, ReaderKey
from .store import identity as identity_store
from .store import readers as reader_store

log = logging.getLogger("honeymesh.auth")


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


class ReaderDirectory:
    """key hash -> ReaderKey (or None), cached per process for at most `ttl` seconds of
    `clock`, an LRU of at most `size` entries, misses cached too.

    The TTL is what bounds how long a revoked key keeps reading on another replica
    (PROTOCOL.md 4 r2: within 5 s); the replica that revokes forgets it at once. Callers
    hand it only the hashes of well-formed keys. It also records each key's last use,
    at most once every `touch_every` per key (one write a minute, not one a request).
    """

    def __init__(
        self,
        pool: object,
        ttl: float,
        clock: Callable[[], float],
        size: int = 50_000,
        touch_every: timedelta = timedelta(minutes=1),
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        self._size = size
        self._touch_every = touch_every
        self._entries: OrderedDict[bytes, tuple[float, ReaderKey | None]] = OrderedDict()
        # key id -> when this process may next record a use of it.
        self._next_touch: OrderedDict[UUID, datetime] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key_hash: bytes) -> ReaderKey | None:
        now = self._clock()
        hit = self._entries.get(key_hash)
        if hit is not None and 0 <= now - hit[0] < self._ttl:
            self._entries.move_to_end(key_hash)
            return hit[1]
        async with self._pool.acquire() as conn:  # type: ignore[attr-defined]
            found = await reader_store.by_hash(conn, key_hash)
        self._entries[key_hash] = (now, found)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return found

    def forget_key(self, key_id: UUID) -> None:
        """Drop a revoked key here at once; other replicas follow within the TTL."""
        for key_hash, (_, found) in list(self._entries.items()):
            if found is not None and found.key_id == key_id:
                del self._entries[key_hash]

    async def touch(self, key: ReaderKey, now: datetime) -> None:
        """Record a use of `key` if none was recorded in the last `touch_every`.

        One query a key per `touch_every` per process at most, and the statement itself
        writes only when the stored time is that old, so replicas together write at most
        once per `touch_every`. A failure loses only the record, never the request.
        """
        due = self._next_touch.get(key.key_id)
        if due is not None and now < due:
            return
        if key.last_used_at is not None and now < key.last_used_at + self._touch_every:
            self._remember_touch(key.key_id, key.last_used_at + self._touch_every)
            return
        self._remember_touch(key.key_id, now + self._touch_every)
        try:
            async with self._pool.acquire() as conn:  # type: ignore[attr-defined]
                await reader_store.touch(conn, key.key_id, now, self._touch_every)
        except Exception:  # the last use is a hint; the read goes on
            log.warning("recording a reader key's last use failed", exc_info=True)

    def _remember_touch(self, key_id: UUID, due: datetime) -> None:
        self._next_touch[key_id] = due
        self._next_touch.move_to_end(key_id)
        while len(self._next_touch) > self._size:
            self._next_touch.popitem(last=False)


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
