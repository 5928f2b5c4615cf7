"""The app factory: middlewares, routes, and each resource opened and closed in pairs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from . import routes, state, wiring
from .admission import NONCE_TTL_SECONDS
from .bodies import MAX_BODY
from .clock import Clock, system_clock, to_datetime
from .config import Config, IPNetwork
from .keydirectory import CredentialWatch, FailedAuthGuard, KeyDirectory, ReaderDirectory
from .metrics import Metrics
from .middleware import hub_middleware
from .notify import FeedNotifier
from .ratelimit import RateLimiter
from .redisconn import RedisGate
from .services import allowlist, expiry, sequencer
from .services.feed import SharedReads
from .services.groupcommit import NonceGroups
from .services.readerusage import ReaderUsage
from .services.snapshots import SnapshotCache
from .services.startuppages import StartupPages
from .store import feed as feed_store
from .store import nonces as nonce_store
from .store import sequencer as sequencer_store
from .store import tlog as tlog_store
from .store.db import create_pool
from .tlog import LogKey

log = logging.getLogger("honeymesh.app")
COMPACTION_SECONDS = 60
NONCE_PURGE_SECONDS = 60
FLUSH_SECONDS = 1.0
# How often each replica adds its reader keys' usage to PostgreSQL.
READER_USAGE_SECONDS = 5.0
# A revoked reader key answers as unknown within 5 s on every replica (PROTOCOL.md 4
# r2): each caches a key for at most this long.
READER_CACHE_SECONDS = 2.0


def create_app(config: Config, *, clock: Clock | None = None) -> web.Application:
    app = web.Application(middlewares=[hub_middleware], client_max_size=MAX_BODY)
    app[state.CONFIG] = config
    app[state.CLOCK] = clock or system_clock
    app[state.METRICS] = Metrics()
    app[state.AUTH_GUARD] = FailedAuthGuard()
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_reader_usage)
    app.cleanup_ctx.append(_expiry_sweeper)
    app.cleanup_ctx.append(_nonce_purger)
    app.cleanup_ctx.append(_feed)
    app.on_shutdown.append(_answer_waiters)
    routes.setup(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[state.CONFIG]
    pool = await create_pool(config.database_url)
    app[state.POOL] = pool
    watch = CredentialWatch()
    app[state.CREDENTIALS] = watch
    listening = config.identity_cache_listening_seconds
    app[state.DIRECTORY] = KeyDirectory(
        pool, config.identity_cache_seconds, watch=watch, listening_ttl=listening
    )
    app[state.NONCES] = NonceGroups(pool, NONCE_TTL_SECONDS)
    app[state.READERS] = ReaderDirectory(
        pool,
        min(config.identity_cache_seconds, READER_CACHE_SECONDS),
        app[state.CLOCK],
        watch=watch,
        listening_ttl=listening,
    )
    now = to_datetime(app[state.CLOCK]())
    await seed_public_addresses(pool, config.public_addresses, now)
    yield
    await pool.close()


async def _reader_usage(app: web.Application) -> AsyncIterator[None]:
    """Reader keys' usage, written every few seconds and once more at shutdown
    (services/readerusage.py), before the pool closes."""
    usage = ReaderUsage(app[state.POOL], app[state.METRICS])
    app[state.READER_USAGE] = usage
    task = asyncio.create_task(_flush_usage_forever(usage), name="reader-usage")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        await usage.flush()
    except Exception:
        log.exception("writing reader key usage at shutdown failed")


async def _flush_usage_forever(usage: ReaderUsage) -> None:
    while True:
        await asyncio.sleep(READER_USAGE_SECONDS)
        try:
            await usage.flush()
        except Exception:  # the next round retries; serving goes on
            log.exception("writing reader key usage failed")


async def seed_public_addresses(pool: Any, nets: Sequence[IPNetwork], now: datetime) -> None:
    """The hub's own addresses are never blocked (PROTOCOL.md sections 4 and 11): listed
    at every start like an operator's entry, audited, and retracting what they cover.
    A range already listed is left as it is."""
    for net in nets:
        await allowlist.allowlist(pool, net, "hub public address", now, "hub")


async def _log_key(conn: Any, config: Config, hub_id: Any) -> LogKey:
    """The log key from HONEYMESH_LOG_KEY_FILE, or the one made at the first migration."""
    origin = config.log_origin or f"honeymesh.{hub_id}"
    if config.log_key_pem is not None:
        return LogKey.from_pem(origin, config.log_key_pem)
    return LogKey.from_seed(origin, await tlog_store.log_key_seed(conn))


async def _feed(app: web.Application) -> AsyncIterator[None]:
    """The feed's listener, its cursor key, the log's compaction and the sequencer."""
    config = app[state.CONFIG]
    async with app[state.POOL].acquire() as conn:
        app[state.CURSOR_KEY] = await feed_store.cursor_key(conn)
        app[state.HUB_IDENTITY] = await sequencer_store.hub_identity(conn)
        app[state.LOG_KEY] = await _log_key(conn, config, app[state.HUB_IDENTITY]["hub_id"])
    notifier = FeedNotifier(config.database_url, app[state.CREDENTIALS])
    notifier.start()
    app[state.NOTIFIER] = notifier
    app[state.FEED_READS] = SharedReads()
    app[state.SNAPSHOTS] = SnapshotCache()
    app[state.STARTUP_PAGES] = StartupPages()
    app[state.SERVICES] = wiring.build(app)
    compactor = asyncio.create_task(_compact_forever(app), name="feed-compaction")
    sequencing = asyncio.create_task(
        sequencer.run_forever(
            app[state.POOL], notifier.news, app[state.LOG_KEY], notifier.connected.is_set
        ),
        name="sequencer",
    )
    yield
    for task in (compactor, sequencing):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await notifier.close()


async def _answer_waiters(app: web.Application) -> None:
    """At SIGTERM, waiting feed requests answer their empty page at once (section 11)."""
    await app[state.NOTIFIER].close()


async def _compact_forever(app: web.Application) -> None:
    retention = app[state.CONFIG].feed_retention_seconds
    while True:
        await asyncio.sleep(COMPACTION_SECONDS)
        now = to_datetime(app[state.CLOCK]())
        try:
            async with app[state.POOL].acquire() as conn:
                await feed_store.compact(conn, now - timedelta(seconds=retention))
        except Exception:  # compaction retries next round; serving goes on
            log.exception("feed compaction failed")


async def _expiry_sweeper(app: web.Application) -> AsyncIterator[None]:
    """The background expiry sweep (services/expiry.py), on the app's clock."""
    task = asyncio.create_task(
        expiry.run_forever(app[state.POOL], app[state.CLOCK], app[state.METRICS]),
        name="expiry-sweeper",
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def purge_nonces(app: web.Application) -> int:
    """One round of the nonce purge: the PostgreSQL nonces expired by the app's clock."""
    async with app[state.POOL].acquire() as conn:
        return await nonce_store.purge_expired(conn, to_datetime(app[state.CLOCK]()))


async def _purge_nonces_forever(app: web.Application) -> None:
    while True:
        await asyncio.sleep(NONCE_PURGE_SECONDS)
        try:
            await purge_nonces(app)
        except Exception:  # the purge retries next round; serving goes on
            log.exception("nonce purge failed")


async def _nonce_purger(app: web.Application) -> AsyncIterator[None]:
    """Every replica purges expired PostgreSQL nonces (store/nonces.py) each minute."""
    task = asyncio.create_task(_purge_nonces_forever(app), name="nonce-purge")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _flush_forever(limiter: RateLimiter) -> None:
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            await limiter.flush()
        except Exception:  # the limiter falls back itself; never let the loop die
            log.exception("deferred rate-limit charges failed")


async def _redis(app: web.Application) -> AsyncIterator[None]:
    config = app[state.CONFIG]
    gate = RedisGate(config.redis_url, config.redis_prefix, app[state.METRICS])
    app[state.REDIS] = gate
    limiter = RateLimiter(gate)
    app[state.LIMITER] = limiter
    flusher = asyncio.create_task(_flush_forever(limiter), name="limit-flush")
    yield
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    await limiter.flush()
    await gate.close()
