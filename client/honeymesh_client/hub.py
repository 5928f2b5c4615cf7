"""HubClient: talks to a hub as a node (signed requests) or a reviewer (bearer token).

Every node request is signed with the shared protocol module (PROTOCOL.md
section 2) and sent with exactly the path and query that were signed: the URL is
built here, once, and handed to aiohttp as ``yarl.URL(url, encoded=True)`` so it
is not re-quoted on the way out.

Retries (bounded, ``RetryPolicy``): connection errors, timeouts and the answers
429, 502, 503 and 504 are tried again after a jittered exponential backoff ("full
jitter"), or after the answer's ``Retry-After`` when it gives one. A
``Retry-After`` longer than ``RetryPolicy.max_delay`` is not slept through: the
client raises :class:`RateLimited` at once, so a caller with a spool keeps the
work for later instead of blocking. Each attempt is signed afresh (new
``created`` and nonce): the hub refuses a replayed nonce. Retrying a publish is
safe because the hub answers ``duplicate`` for a ``(node, id)`` it already has.

The clock, the sleep and the random source are injected, so tests run the
backoff without real sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from yarl import URL

from .errors import ClientError, HubError, HubUnreachable, RateLimited
from .indicators import canonical
from .protocol import ijson
from .protocol.keys import NodeKey, is_keyid
from .protocol.signing import sign_request
from .provenance import Expectation, KeyInfo, PublisherCheck, check_publisher

__all__ = ["HubClient", "Provenance", "Response", "RetryPolicy", "parse_retry_after"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
_RATELIMIT_REMAINING = re.compile(r";\s*r=(\d+)")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to try again.

    ``attempts`` counts every try, the first included (1 = no retry). The n-th
    wait (n from 1) is uniform in ``[0, min(max_delay, base_delay * 2**(n-1))]``
    ("full jitter"), or the server's ``Retry-After`` plus up to ``base_delay``
    of jitter, so clients told the same time do not return in lockstep.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts is at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays are not negative")

    def backoff(self, retry: int, rng: Callable[[], float]) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return rng() * ceiling


def parse_retry_after(value: str | None, now: float) -> float | None:
    """RFC 9110 section 10.2.3: delay-seconds or an HTTP-date; None if neither."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def rate_remaining(self) -> int | None:
        """``r`` of the IETF ``RateLimit`` field (PROTOCOL.md section 9), if any."""
        found = _RATELIMIT_REMAINING.search(self.headers.get("RateLimit", ""))
        return int(found.group(1)) if found else None


@dataclass(frozen=True, slots=True)
class Provenance:
    """A decision's publishers, each checked (PROTOCOL.md section 8)."""

    decision_id: str
    indicator: dict[str, str]
    scope_checked: bool
    publishers: list[PublisherCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Fail closed: a decision with no publisher to check does not hold."""
        return bool(self.publishers) and all(p.ok for p in self.publishers)


def _problem(status: int, raw: bytes, headers: Mapping[str, str], now: float) -> HubError:
    code, detail, body = f"http_{status}", "", None
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or code)
        detail = str(body.get("detail") or body.get("title") or "")
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            where = first.get("pointer")
            more = f" ({where}: {first.get('detail')})" if where else ""
            detail = detail.rstrip(".") + more
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    return HubError(status, code, detail, retry_after=retry_after, body=body)


class _PeerConnector(aiohttp.TCPConnector):
    """Notes the peer address of each connection it hands out."""

    peer: str | None = None

    async def connect(  # the base class's signature, timeout included
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> aiohttp.connector.Connection:
        conn = await super().connect(req, traces, timeout)
        transport = conn.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0])
        return conn


class HubClient:
    """One hub, one identity (a node's key, or a reviewer's token, or none)."""

    def __init__(
        self,
        base_url: str,
        *,
        key: NodeKey | None = None,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        session: aiohttp.ClientSession | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"the hub URL {base_url!r} is not an http:// or https:// URL")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/")  # a hub served under a path, behind a proxy
        self.key = key
        self._token = token
        self.retry = retry or RetryPolicy()
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._session = session
        self._own_session = session is None
        self._on_retry = on_retry
        self._keys: dict[str, KeyInfo | None] = {}

    @property
    def peer_address(self) -> str | None:
        """The address of the last connection used (the hub as reached), if known."""
        connector = self._session.connector if self._session is not None else None
        return connector.peer if isinstance(connector, _PeerConnector) else None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=_PeerConnector())
        return self._session

    # ------------------------------------------------------------------ transport

    def target(self, path: str, query: Mapping[str, str | int] | None = None) -> tuple[str, str]:
        """The raw path and query (no ``?``) exactly as they will be sent and signed."""
        raw_path = self._prefix + quote(path, safe="/:@!$&'()*+,;=-._~")
        items = [(k, str(v)) for k, v in (query or {}).items()]
        return raw_path, urlencode(items, safe="-_.~")

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: object = None,
        sign: bool | None = None,
        retry: RetryPolicy | None = None,
        extra_timeout: float = 0.0,
        text: bool = False,
    ) -> Response:
        """Send one request (retrying per the policy); HubError for any 4xx/5xx. With
        `text`, the body is the answer's UTF-8 text, not JSON."""
        policy = retry or self.retry
        raw_path, raw_query = self.target(path, query)
        url = self.base_url + raw_path + (f"?{raw_query}" if raw_query else "")
        data = ijson.dumps(body) if body is not None else None
        signed = self.key is not None if sign is None else sign
        timeout = aiohttp.ClientTimeout(total=self._timeout + extra_timeout)
        last: str = ""
        for attempt in range(1, policy.attempts + 1):
            headers = {"Accept": "text/plain" if text else "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            if signed:
                if self.key is None:
                    raise ClientError("this request needs a node key")
                headers.update(
                    sign_request(
                        self.key, method, raw_path, raw_query, data, created=int(self._clock())
                    )
                )
            elif self._token is not None:
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                async with self._client().request(
                    method, URL(url, encoded=True), data=data, headers=headers, timeout=timeout
                ) as resp:
                    raw = await resp.read()
                    status, resp_headers = resp.status, dict(resp.headers)
            except aiohttp.InvalidURL:
                raise ClientError(f"the hub URL {url!r} is not valid") from None
            except _CONNECTION_ERRORS as exc:
                last = _describe(exc)
                if attempt == policy.attempts:
                    raise HubUnreachable(
                        f"cannot reach the hub at {self.base_url} ({last})"
                    ) from exc
                delay = policy.backoff(attempt, self._rng)
                self._note(f"{last}; retrying in {delay:.1f} s")
                await self._sleep(delay)
                continue
            if status < 400 and text:
                return Response(status, resp_headers, raw.decode("utf-8", "replace"))
            if status < 400:
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    raise ClientError(
                        f"the server at {self.base_url} answered {status} with something other "
                        "than JSON; is it a HoneyMesh hub?"
                    ) from None
                return Response(status, resp_headers, parsed)
            error = _problem(status, raw, resp_headers, self._clock())
            if status not in RETRY_STATUSES or attempt == policy.attempts:
                raise error
            if error.retry_after is not None:
                if error.retry_after > policy.max_delay:
                    raise RateLimited(
                        error.status,
                        error.code,
                        error.detail,
                        retry_after=error.retry_after,
                        body=error.body,
                    )
                delay = error.retry_after + self._rng() * policy.base_delay
            else:
                delay = policy.backoff(attempt, self._rng)
            self._note(f"hub answered {status} {error.code}; retrying in {delay:.1f} s")
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _note(self, message: str) -> None:
        if self._on_retry is not None:
            self._on_retry(message)

    # ------------------------------------------------------------------ node API

    async def hub_info(self) -> dict[str, Any]:
        return dict((await self.request("GET", "/v1/hub", sign=False)).body)

    async def enroll(
        self, token: str, name: str, labels: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        if self.key is None:
            raise ClientError("enrolling needs a node key; run `honeymesh-node keygen` first")
        body: dict[str, object] = {"token": token, "public_key": self.key.public_b64, "name": name}
        if labels:
            body["labels"] = dict(labels)
        return dict((await self.request("POST", "/v1/nodes/enroll", body=body)).body)

    async def node_self(self) -> dict[str, Any]:
        return dict((await self.request("GET", "/v1/nodes/self")).body)

    async def publish(
        self, envelopes: Sequence[Mapping[str, object]], retry: RetryPolicy | None = None
    ) -> Response:
        """POST /v1/signals; the answer's ``results`` are one per envelope, in order."""
        return await self.request(
            "POST", "/v1/signals", body={"envelopes": list(envelopes)}, retry=retry
        )

    async def feed(self, cursor: str | None, *, limit: int = 1000, wait: int = 0) -> dict[str, Any]:
        query: dict[str, str | int] = {"limit": limit}
        if cursor:
            query["cursor"] = cursor
        if wait:
            query["wait"] = wait
        reply = await self.request("GET", "/v1/feed", query=query, extra_timeout=float(wait))
        return dict(reply.body)

    # ------------------------------------------------------- transparency log (15)

    async def transparency_logs(self) -> list[dict[str, Any]]:
        body = (await self.request("GET", "/v1/transparency/logs")).body
        return list(body.get("logs") or []) if isinstance(body, dict) else []

    async def log_checkpoint(self, log: str, *, cosigned: bool = False) -> str:
        query: dict[str, str | int] = {"cosigned": "true"} if cosigned else {}
        reply = await self.request(
            "GET", f"/v1/transparency/{quote(log, safe=':')}/checkpoint", query=query, text=True
        )
        return str(reply.body)

    async def _hashes(self, log: str, what: str, query: dict[str, str | int]) -> list[bytes]:
        body = (
            await self.request(
                "GET", f"/v1/transparency/{quote(log, safe=':')}/{what}", query=query
            )
        ).body
        try:
            return [base64.b64decode(h, validate=True) for h in body["hashes"]]
        except (KeyError, TypeError, ValueError):
            raise ClientError(f"the hub's {what} of the {log} log is malformed") from None

    async def log_frontier(self, log: str, size: int) -> list[bytes]:
        return await self._hashes(log, "frontier", {"size": size})

    async def log_consistency(self, log: str, first: int, second: int) -> list[bytes]:
        return await self._hashes(log, "proof/consistency", {"from": first, "to": second})

    async def log_inclusion(self, log: str, index: int, size: int) -> list[bytes]:
        return await self._hashes(log, "proof/inclusion", {"index": index, "size": size})

    async def cosign(self, log: str, checkpoint: str, signature: str) -> dict[str, Any]:
        body = {"checkpoint": checkpoint, "signature": signature}
        reply = await self.request(
            "POST", f"/v1/transparency/{quote(log, safe=':')}/cosignatures", body=body
        )
        return dict(reply.body)

    async def key_info(self, keyid: str) -> KeyInfo | None:
        """GET /v1/keys/{keyid}, cached for the life of the client; None if unknown."""
        if keyid in self._keys:
            return self._keys[keyid]
        try:
            body = (await self.request("GET", f"/v1/keys/{keyid}")).body
        except HubError as exc:
            if exc.status != 404:
                raise
            found: KeyInfo | None = None
        else:
            found = KeyInfo(
                keyid=str(body.get("keyid", "")),
                public_key=str(body.get("public_key", "")),
                node_id=str(body.get("node_id", "")),
                tenant_id=str(body.get("tenant_id", "")),
            )
        self._keys[keyid] = found
        return found

    async def verify_decision(
        self, decision_id: str, *, scope: str | None = None, tenant_id: str | None = None
    ) -> Provenance:
        """Check every publisher behind a decision; the hub is not trusted.

        Each envelope's signature over PAE must hold under the key whose SHA-256
        is its keyid, and its payload's ``node_id``, indicator and scope must
        match that key's node and the decision. ``scope`` (and ``tenant_id`` for
        ``tenant``) come from the answer when it carries them, else from the
        caller (the local feed state); without either the scope is not checked.
        """
        body = (await self.request("GET", f"/v1/decisions/{decision_id}/provenance")).body
        ind = body.get("indicator") or {}
        indicator = canonical(str(ind.get("type")), str(ind.get("value")))
        scope = body.get("scope", scope)
        tenant_id = body.get("tenant_id", tenant_id)
        expect = Expectation(indicator=indicator, scope=scope, tenant_id=tenant_id)
        checks = []
        for entry in body.get("signals") or []:
            keyid = str(entry.get("keyid", ""))
            key = await self.key_info(keyid) if is_keyid(keyid) else None
            checks.append(
                check_publisher(
                    entry.get("envelope"),
                    keyid=keyid,
                    node_id=str(entry.get("node_id", "")),
                    key=key,
                    expect=expect,
                )
            )
        return Provenance(
            decision_id=str(body.get("id", decision_id)),
            indicator=indicator.as_json(),
            scope_checked=scope is not None,
            publishers=checks,
        )

    # ------------------------------------------------------------------ reviewer API

    async def review_queue(
        self, state: str = "pending", *, order: str | None = None, page_size: int = 500
    ) -> list[dict[str, Any]]:
        """Every candidate in ``state``, following ``next`` to the last page."""
        out: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            query: dict[str, str | int] = {"state": state, "limit": page_size}
            if order:
                query["order"] = order
            if after:
                query["after"] = after
            body = (await self.request("GET", "/v1/review/candidates", query=query)).body
            out.extend(body.get("candidates") or [])
            after = body.get("next")
            if not after:
                return out

    async def review_candidate(self, candidate_id: str) -> dict[str, Any]:
        return dict((await self.request("GET", f"/v1/review/candidates/{candidate_id}")).body)

    async def claim(self, candidate_id: str, lease_seconds: int = 300) -> dict[str, Any]:
        reply = await self.request(
            "POST",
            f"/v1/review/candidates/{candidate_id}/claim",
            body={"lease_seconds": lease_seconds},
        )
        return dict(reply.body or {})

    async def decide(self, decisions: Sequence[Mapping[str, object]]) -> list[dict[str, Any]]:
        reply = await self.request(
            "POST", "/v1/review/decisions", body={"decisions": list(decisions)}
        )
        return list(reply.body.get("results") or [])


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return str(exc.os_error.strerror or exc.os_error).lower()
    text = str(exc).strip()
    return text or type(exc).__name__
