"""Which node holds which key and which tenant a reader key reads, cached per process,
and the bound on the credential lookups of a source past the failed-auth limit.

None of them touches the request or the app state: auth.py hands them keyids and
source addresses, admission.py marks the flooding sources, notify.py's listener tells
the `CredentialWatch` what it hears.

How long a cached credential is trusted: `ttl` (2 s), as PROTOCOL.md section 4's
"within 5 s" needs of a replica that hears nothing. But every change to what a lookup
reads is announced at commit (migration 0014's triggers), so while this process's
listener is known to hear them (a heartbeat answered within the last `LIVE_SECONDS`),
an entry read since the last notice stays good for `listening_ttl` (60 s): a node
polling every 10 s, or a bouncer, no longer costs a lookup a request. Any notice, and
any loss or return of the listener, moves the watch's generation, and an entry read
before the move falls back to `ttl`. Misses are never kept past `ttl` (an enrollment
announces nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

from honeymesh_client.protocol.keys import is_keyid

from .entitlements import NodeIdentity, ReaderKey
from .store import identity as identity_store
from .store import readers as reader_store

log = logging.getLogger("honeymesh.auth")

# The listener's heartbeat (notify.py) is answered this often; a watch that has not
# heard one sent in the last LIVE_SECONDS trusts nothing past the short TTL. A change
# committed while the listener hears nothing is so served at most LIVE_SECONDS plus
# the short TTL: within PROTOCOL.md section 4's 5 s.
HEARTBEAT_SECONDS = 1.0
LIVE_SECONDS = 2.0


class CredentialWatch:
    """Whether this process hears every credential change, and a generation that moves
    with each change heard and each loss or return of the listener."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, live_for: float = LIVE_SECONDS
    ) -> None:
        self._clock = clock
        self._live_for = live_for
        self._live_until = -math.inf
        self.generation = 0
        self._waiting: list[asyncio.Future[None]] = []

    def live(self) -> bool:
        return self._clock() < self._live_until

    def heard(self, sent_at: float) -> None:
        """A heartbeat sent at `sent_at` (this watch's clock) was answered: every notice
        committed before then has been delivered."""
        self._live_until = max(self._live_until, sent_at + self._live_for)
        self._wake()

    def changed(self) -> None:
        """A notice: something a cached credential says may have changed."""
        self._move()

    def lost(self) -> None:
        """The listener is gone (or has just come back: what it missed is unknown)."""
        self._live_until = -math.inf
        self._move()

    def now(self) -> float:
        return self._clock()

    def _move(self) -> None:
        self.generation += 1
        self._wake()

    def _wake(self) -> None:
        woken, self._waiting = self._waiting, []
        for future in woken:
            if not future.done():
                future.set_result(None)

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            future = asyncio.get_running_loop().create_future()
            self._waiting.append(future)
            await future

    async def moved_past(self, generation: int) -> None:
        """Until the generation is past `generation` (for tests and drills)."""
        await self._until(lambda: self.generation > generation)

    async def until_live(self) -> None:
        """Until a heartbeat was answered (for tests and drills)."""
        await self._until(self.live)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CredentialCache(Generic[K, V]):
    """What a lookup found, by key, for `ttl` seconds of `clock`, or `listening_ttl`
    while `watch` hears every change (the module's docstring); an LRU of at most `size`
    entries, misses kept `ttl` only. The one cache under both directories."""

    def __init__(
        self,
        pool: object,
        lookup: Callable[[Any, K], Awaitable[V | None]],
        ttl: float,
        clock: Callable[[], float],
        size: int,
        watch: CredentialWatch | None,
        listening_ttl: float,
    ) -> None:
        self._pool = pool
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._size = size
        self._watch = watch
        self._listening_ttl = listening_ttl
        self.lookups = 0
        # key -> (read at, the watch's generation before the read, what it found)
        self._entries: OrderedDict[K, tuple[float, int, V | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    async def get(self, key: K) -> V | None:
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and self._fresh(hit, now):
            self._entries.move_to_end(key)
            return hit[2]
        generation = self._watch.generation if self._watch is not None else 0
        self.lookups += 1
        async with self._pool.acquire() as conn:  # type: ignore[attr-defined]
            found = await self._lookup(conn, key)
        self._entries[key] = (now, generation, found)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return found

    def _fresh(self, hit: tuple[float, int, V | None], now: float) -> bool:
        """Within `ttl`; or found, read since the watch's last move, and within
        `listening_ttl` while the watch hears every change."""
        age = now - hit[0]
        if 0 <= age < self._ttl:
            return True
        watch = self._watch
        return (
            watch is not None
            and hit[2] is not None
            and 0 <= age < self._listening_ttl
            and hit[1] == watch.generation
            and watch.live()
        )

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def forget_where(self, matches: Callable[[V], bool]) -> None:
        for key, (_, _, found) in list(self._entries.items()):
            if found is not None and matches(found):
                del self._entries[key]


class KeyDirectory:
    """keyid -> NodeIdentity, cached per process for `ttl` seconds, or `listening_ttl`
    while `watch` hears every change (the module's docstring).

    The cache is what makes a revoke or a PATCH reach every replica "within 5 s"
    (PROTOCOL.md section 4) without a database round trip on every request. It is an
    LRU of at most `size` entries: misses are cached too (a flood of random keyids
    costs one lookup each, then evicts only the least recently used), and callers
    hand it only well-formed keyids, so no entry is larger than 64 characters.
    """

    def __init__(
        self,
        pool: object,
        ttl: float,
        size: int = 50_000,
        watch: CredentialWatch | None = None,
        listening_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: CredentialCache[str, NodeIdentity] = CredentialCache(
            pool, identity_store.identity_by_keyid, ttl, clock, size, watch, listening_ttl
        )

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, keyid: object) -> bool:
        return keyid in self._cache

    @property
    def lookups(self) -> int:
        return self._cache.lookups

    async def get(self, keyid: str) -> NodeIdentity | None:
        if not is_keyid(keyid):
            return None
        return await self._cache.get(keyid)

    def forget(self, keyid: str) -> None:
        self._cache.forget(keyid)

    def forget_node(self, node_id: UUID) -> None:
        """Drop a node's keys here at once; other replicas follow within the TTL."""
        self._cache.forget_where(lambda found: found.node_id == node_id)


class ReaderDirectory:
    """key hash -> ReaderKey (or None), cached per process for `ttl` seconds of `clock`
    (or `listening_ttl` while `watch` hears every change, as KeyDirectory), an LRU of
    at most `size` entries, misses cached `ttl` only.

    The watch and the TTL bound how long a revoked key keeps reading on another replica
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
        watch: CredentialWatch | None = None,
        listening_ttl: float = 0.0,
    ) -> None:
        self._pool = pool
        self._size = size
        self._touch_every = touch_every
        self._cache: CredentialCache[bytes, ReaderKey] = CredentialCache(
            pool, reader_store.by_hash, ttl, clock, size, watch, listening_ttl
        )
        # key id -> when this process may next record a use of it.
        self._next_touch: OrderedDict[UUID, datetime] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def lookups(self) -> int:
        return self._cache.lookups

    async def get(self, key_hash: bytes) -> ReaderKey | None:
        return await self._cache.get(key_hash)

    def forget_key(self, key_id: UUID) -> None:
        """Drop a revoked key here at once; other replicas follow within the TTL."""
        self._cache.forget_where(lambda found: found.key_id == key_id)

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
