"""One LISTEN connection per process wakes the feed's waiting requests.

A transaction that writes feed events runs `pg_notify('honeymesh_feed', scopes)`;
PostgreSQL delivers it at commit to every replica's listener, where it wakes the
sequencer (`news`). The feed serves sequenced events only, so waiting requests are
woken by the sequencer's own commit, `pg_notify('honeymesh_sequenced', scopes)`
(store/sequencer.py): then what they wait for is there to read. Waiters register a
future under each scope they may see; a notification resolves the futures of its
scopes only, so a waiting node costs one future and no database polling. A payload
too long for PostgreSQL (8000 bytes) is sent as `WAKE_ALL` instead: every waiter looks.

The same connection hears `honeymesh_credentials` (migration 0014: a key, node, tenant
or reader key changed) for the credential caches' `CredentialWatch`, and asks
`SELECT 1` every `HEARTBEAT_SECONDS`: an answer proves that every notice committed
before it was sent has arrived, and a connection that stops answering is dropped and
made again (a half-open one would otherwise look connected for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

from .keydirectory import HEARTBEAT_SECONDS, CredentialWatch
from .store.db import ping

log = logging.getLogger("honeymesh.notify")

CHANNEL = "honeymesh_feed"
SEQUENCED = "honeymesh_sequenced"
CREDENTIALS = "honeymesh_credentials"
# The listener's application_name, as pg_stat_activity shows it.
LISTENER_NAME = "honeymesh-listener"
WAKE_ALL = "*"  # the payload of a change to too many scopes to list (store/signals.py)
_RECONNECT_SECONDS = 1.0
# A heartbeat not answered in this long drops the connection.
_HEARTBEAT_TIMEOUT_SECONDS = 5.0


def _resolver(future: asyncio.Future[None]) -> Any:
    def resolve(_conn: Any) -> None:
        if not future.done():
            future.set_result(None)

    return resolve


class FeedNotifier:
    def __init__(self, dsn: str, credentials: CredentialWatch | None = None) -> None:
        self._dsn = dsn
        self._credentials = credentials or CredentialWatch()
        self._by_scope: dict[str, set[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self._registered = asyncio.Condition()
        self._news = asyncio.Event()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def waiting(self) -> int:
        return len({id(f) for futures in self._by_scope.values() for f in futures})

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="feed-listener")

    async def close(self) -> None:
        """Wake every waiter (they answer their empty page) and stop listening."""
        self._closing = True
        self.wake_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, scopes: Iterable[str], seconds: float) -> bool:
        """Until news in one of `scopes`, or `seconds`; True when woken by news."""
        if self._closing:
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        keys = list(scopes)
        for key in keys:
            self._by_scope.setdefault(key, set()).add(future)
        async with self._registered:
            self._registered.notify_all()
        try:
            await asyncio.wait_for(future, seconds)
        except TimeoutError:
            return False
        finally:
            for key in keys:
                waiters = self._by_scope.get(key)
                if waiters is not None:
                    waiters.discard(future)
                    if not waiters:
                        del self._by_scope[key]
        return not self._closing

    async def until_waiting(self, count: int) -> None:
        """Return once at least `count` requests wait (for tests and drills)."""
        async with self._registered:
            await self._registered.wait_for(lambda: self.waiting >= count)

    def wake(self, scopes: Iterable[str]) -> None:
        for key in scopes:
            for future in self._by_scope.pop(key, ()):
                if not future.done():
                    future.set_result(None)

    def wake_all(self) -> None:
        self._news.set()
        self.wake(list(self._by_scope))

    async def news(self, seconds: float) -> None:
        """Until any notification (or a reconnect) since the last call, or `seconds`."""
        if seconds > 0 and not self._news.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), seconds)
        self._news.clear()

    def _on_feed(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._news.set()

    def _on_credentials(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._credentials.changed()

    def _on_sequenced(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == WAKE_ALL:
            self.wake_all()
        else:
            self.wake(payload.split(","))

    async def _listen(self) -> None:
        # Ends when closing as well as when cancelled: a cancellation that lands as an
        # awaited call finishes can be lost (asyncio.wait_for on 3.11 did so), and a
        # listener that lived on would hold up the app's shutdown for ever.
        while not self._closing:
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": LISTENER_NAME}
                )
                try:
                    await conn.add_listener(CHANNEL, self._on_feed)
                    await conn.add_listener(SEQUENCED, self._on_sequenced)
                    await conn.add_listener(CREDENTIALS, self._on_credentials)
                    self.connected.set()
                    # Anything committed while we were away: let every waiter look,
                    # and trust no credential read before now past the short TTL.
                    self.wake_all()
                    self._credentials.lost()
                    closed = asyncio.get_running_loop().create_future()
                    conn.add_termination_listener(_resolver(closed))
                    await self._heartbeats(conn, closed)
                finally:
                    self.connected.clear()
                    self._credentials.lost()
                    with contextlib.suppress(Exception):
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect whatever broke the connection
                if self._closing:
                    return
                log.warning("feed listener lost", extra={"fields": {"error": type(exc).__name__}})
            self.wake_all()
            if not self._closing:
                await asyncio.sleep(_RECONNECT_SECONDS)

    async def _heartbeats(self, conn: Any, closed: asyncio.Future[None]) -> None:
        """Until the connection closes; raises when a heartbeat goes unanswered."""
        while not closed.done() and not self._closing:
            sent = self._credentials.now()
            async with asyncio.timeout(_HEARTBEAT_TIMEOUT_SECONDS):
                await ping(conn)
            self._credentials.heard(sent)
            await asyncio.wait({closed}, timeout=HEARTBEAT_SECONDS)
