"""Every typed key of the app and of a request (aiohttp AppKey / RequestKey)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .clock import Clock
from .config import Config
from .metrics import Metrics

if TYPE_CHECKING:
    from .callers import Caller
    from .keydirectory import CredentialWatch, FailedAuthGuard, KeyDirectory, ReaderDirectory
    from .notify import FeedNotifier
    from .ratelimit import RateLimiter
    from .redisconn import RedisGate
    from .services.feed import SharedReads
    from .services.groupcommit import NonceGroups
    from .services.readerusage import ReaderUsage
    from .services.snapshots import SnapshotCache
    from .wiring import Services

CONFIG = web.AppKey("config", Config)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
METRICS = web.AppKey("metrics", Metrics)
POOL: web.AppKey[Any] = web.AppKey("pool")
REDIS: web.AppKey[RedisGate] = web.AppKey("redis")
LIMITER: web.AppKey[RateLimiter] = web.AppKey("limiter")
DIRECTORY: web.AppKey[KeyDirectory] = web.AppKey("directory")
# Every signed request's nonce is spent through this (admission.py).
NONCES: web.AppKey[NonceGroups] = web.AppKey("nonces")
READERS: web.AppKey[ReaderDirectory] = web.AppKey("readers")
# Whether this process hears every credential change (keydirectory.py, notify.py).
CREDENTIALS: web.AppKey[CredentialWatch] = web.AppKey("credentials")
READER_USAGE: web.AppKey[ReaderUsage] = web.AppKey("reader_usage")
AUTH_GUARD: web.AppKey[FailedAuthGuard] = web.AppKey("auth_guard")
NOTIFIER: web.AppKey[FeedNotifier] = web.AppKey("notifier")
CURSOR_KEY: web.AppKey[bytes] = web.AppKey("cursor_key")
# (hub_id, mesh_collection, created_at) of hub_identity, made at the first migration
HUB_IDENTITY: web.AppKey[Any] = web.AppKey("hub_identity")
# The transparency log's key and origin (tlog.LogKey; PROTOCOL.md 15 r2)
LOG_KEY: web.AppKey[Any] = web.AppKey("log_key")
FEED_READS: web.AppKey[SharedReads] = web.AppKey("feed_reads")
SNAPSHOTS: web.AppKey[SnapshotCache] = web.AppKey("snapshots")
# CrowdSec startup pages shared by every bouncer (services/startuppages.py)
STARTUP_PAGES: web.AppKey[Any] = web.AppKey("startup_pages")
# Every service, built once the resources above are up (wiring.py).
SERVICES: web.AppKey[Services] = web.AppKey("services")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
# Seconds a request may wait by design (a long-poll's `wait`): not counted as slow.
WAITS: web.RequestKey[float] = web.RequestKey("waits")
CALLER: web.RequestKey[Caller] = web.RequestKey("caller")
# Set once a request proves a known identity (an enrolled node's valid signature or a
# valid bearer token): such a request is never refused by the failed-auth limit.
IDENTIFIED: web.RequestKey[bool] = web.RequestKey("identified")
# Set when a reader key was refused (PROTOCOL.md 13 r2): whatever the answer's status,
# 401 or 403, it counts as a failed authentication (admission.py).
READER_REFUSED: web.RequestKey[bool] = web.RequestKey("reader_refused")
