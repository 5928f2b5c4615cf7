"""One Redis connection per process that carries every hot-path script call, pipelined.

Each request's rate-limit admission and each long-poll's waiter slot is one Lua script
call. Through redis-py's pool a call costs the hub about 100 µs of CPU: a connection
taken from the pool and given back, a timeout context, a health check, a reply read
through a stream. Here concurrent calls share one connection: each is packed
(hiredis), written at once, and answered in order by a protocol that feeds what
arrives to hiredis' reader, about 13 µs a call (measured with 32 concurrent callers
against a local Redis).

Failure stays simple and bounded. A call not answered within `timeout`, a lost
connection, or more than `max_pending` calls in flight, drop the connection: every
call waiting on it fails with redis-py's ConnectionError or TimeoutError, which the
gate's callers already treat as Redis being unreachable (redisconn.py), and the next
call connects again. Connection settings come from the same URL as redis-py's pool
(host and port or a unix socket, user and password, database, `rediss://` with the
system's trust store or `ssl_ca_certs`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_PENDING = 10_000

Arg = str | int | bytes


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: deque[asyncio.Future[Any]] = deque()
        self._reader = hiredis.Reader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"redis sent garbage: {exc}"))
                return
            if reply is False:
                return
            if not self.pending:  # a reply nobody asked for: out of step, start over
                self.fail(RedisConnectionError("redis sent an unexpected reply"))
                return
            future = self.pending.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                text = str(reply)
                kind = NoScriptError if text.startswith("NOSCRIPT") else ResponseError
                future.set_exception(kind(text))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail_pending(RedisConnectionError("connection to redis lost"))

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        if self.transport is None:
            raise RedisConnectionError("connection to redis lost")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.transport.write(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]  # its stub types a 1-tuple
        self.pending.append(future)
        return future

    def fail(self, exc: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self._fail_pending(exc)

    def _fail_pending(self, exc: Exception) -> None:
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(exc)
                future.exception()  # a caller that timed out never reads it


class Script:
    """A Lua script called by its SHA1, loaded again when Redis answers NOSCRIPT."""

    def __init__(self, text: str) -> None:
        self.text = text
        # Redis names scripts by SHA1; not a security use.
        self.sha = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class Pipelined:
    def __init__(
        self,
        url: str,
        timeout: float,
        client_name: str,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._timeout = timeout
        self._client_name = client_name
        self._max_pending = max_pending
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def script(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        head = (len(keys), *keys, *args)
        try:
            return await self.call("EVALSHA", script.sha, *head)
        except NoScriptError:  # a restarted or flushed Redis: EVAL loads it again
            return await self.call("EVAL", script.text, *head)

    async def call(self, *args: Arg) -> Any:
        protocol = await self._connected()
        if len(protocol.pending) >= self._max_pending:
            protocol.fail(RedisConnectionError("too many redis calls in flight"))
            raise RedisConnectionError("too many redis calls in flight")
        future = protocol.send(args)
        try:
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError:
            protocol.fail(RedisTimeoutError("redis did not answer in time"))
            raise RedisTimeoutError("redis did not answer in time") from None

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._protocol is not None:
            self._protocol.fail(RedisConnectionError("closed"))
            self._protocol = None

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            return protocol
        # One attempt at a time, shared: while Redis is down, a thousand callers wait
        # for one connect timeout together, not for a thousand in turn.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect_in_time())
            self._connecting.add_done_callback(self._connect_done)
        protocol = await asyncio.shield(self._connecting)
        self._protocol = protocol
        return protocol

    def _connect_done(self, attempt: asyncio.Future[_Protocol]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # read here too, should every caller have gone

    async def _connect_in_time(self) -> _Protocol:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._connect()
        except TimeoutError:
            raise RedisTimeoutError("redis did not answer the connection in time") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to redis: {exc!r}") from None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        kind = options.get("connection_class")
        if kind is UnixDomainSocketConnection:
            _, protocol = await loop.create_unix_connection(_Protocol, options["path"])
        else:
            host = options.get("host", "localhost")
            _, protocol = await loop.create_connection(
                _Protocol,
                host,
                options.get("port", 6379),
                ssl=_tls(options) if kind is SSLConnection else None,
            )
        # The connection's set-up, pipelined; each answer must be OK.
        setup: list[asyncio.Future[Any]] = []
        if options.get("password") is not None:
            user = options.get("username")
            creds = (user, options["password"]) if user else (options["password"],)
            setup.append(protocol.send(("AUTH", *creds)))
        if options.get("db"):
            setup.append(protocol.send(("SELECT", options["db"])))
        setup.append(protocol.send(("CLIENT", "SETNAME", self._client_name)))
        try:
            for future in setup:
                await future
        except ResponseError as exc:
            protocol.fail(RedisConnectionError(str(exc)))
            raise RedisConnectionError(f"redis refused the connection's set-up: {exc}") from None
        return protocol


def _tls(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    reqs = options.get("ssl_cert_reqs")
    if reqs in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context
