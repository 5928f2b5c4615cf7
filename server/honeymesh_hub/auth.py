"""Who is calling: a node by its RFC 9421 signature, or a bearer token.

PROTOCOL.md section 2 fixes the order of checks. Identity is settled before anything
else (entitlement, tenant state), so a bad request learns nothing about another
node's tenant. Nonces live in Redis (`SET NX EX`, seen by every replica), or in
PostgreSQL while Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aiohttp import web

from honeymesh_client.protocol import signing
from honeymesh_client.protocol.errors import ProtocolError
from honeymesh_client.protocol.keys import is_keyid, keyid_of

from . import state
from .clock import to_datetime
from .config import Config
from .entitlements import NodeIdentity, check_node
from .errors import Forbidden, RateLimited, Unauthorized
from .ratelimit import Admission, Limit, Window, per_minute, quota_of, refusal
from .store import identity as identity_store
from .store import nonces as nonce_store
from .store import tokens as token_store
from .tokens import hash_token, well_formed_bearer

NONCE_TTL_SECONDS = 600
FAILED_AUTH_PER_MINUTE = 30
# RFC 9110 section 11.6.1: a 401 carries the challenge of the scheme it wants (RFC 6750).
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="honeymesh"'}


@dataclass(frozen=True, slots=True)
class NodeCaller:
    identity: NodeIdentity

    @property
    def node_id(self) -> UUID:
        return self.identity.node_id

    @property
    def tenant_id(self) -> UUID:
        return self.identity.tenant.tenant_id

    @property
    def keyid(self) -> str:
        return self.identity.keyid


@dataclass(frozen=True, slots=True)
class TokenCaller:
    token_id: UUID
    role: str
    scope: str | None  # "mesh", "tenant" or None for admin
    scope_tenant_id: UUID | None
    name: str

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


Caller = NodeCaller | TokenCaller


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
    async def lookup(self, request: web.Request) -> AsyncIterator[None]:
        """Around a credential lookup: bounded when the request's source is flooding."""
        if not self.flooding(source_address(request, request.app[state.CONFIG])):
            yield
            return
        async with self._lookups:
            yield


def split_target(request: web.Request) -> tuple[str, str]:
    """`@path` and `@query` exactly as sent, percent-encoding kept (RFC 9421 2.2.6-7)."""
    path, _, query = request.raw_path.partition("?")
    return path, query


def now_of(request: web.Request) -> float:
    now: float = request.app[state.CLOCK]()
    return now


async def _check_signature(
    request: web.Request, body: bytes
) -> tuple[signing.SignatureInput, float]:
    headers = request.headers
    now = now_of(request)
    try:
        sig = signing.parse_signature_headers(
            _joined(headers, "Signature-Input"), _joined(headers, "Signature")
        )
        signing.check_components(sig, bool(body))
        signing.check_freshness(sig, now)
    except ProtocolError as exc:
        raise Unauthorized(exc.detail, code=exc.code) from None
    return sig, now


def _joined(headers: Any, name: str) -> str | None:
    """Every instance of a header, joined as RFC 9110 5.3 combines field lines."""
    values = headers.getall(name, [])
    return ", ".join(values) if values else None


def _verify_with(
    request: web.Request,
    sig: signing.SignatureInput,
    public_key: bytes,
    body: bytes,
    *,
    enrolled: bool,
) -> None:
    path, query = split_target(request)
    try:
        base = signing.signature_base(
            sig, request.method, path, query, request.headers.get("Content-Digest")
        )
        signing.verify_signature(sig, public_key, base)
        # An enrolled node's valid signature is never refused by the failed-auth limit,
        # even if the digest or the nonce fails next (PROTOCOL.md section 9).
        if enrolled:
            request[state.IDENTIFIED] = True
        if body or "content-digest" in sig.components:
            signing.check_content_digest(request.headers.get("Content-Digest"), body)
    except ProtocolError as exc:
        raise Unauthorized(exc.detail, code=exc.code) from None


async def _spend_nonce(request: web.Request, keyid: str, nonce: str, now: float) -> None:
    """The nonce alone (enrollment)."""
    await _admission(request, keyid, nonce, now, ())


async def _admission(
    request: web.Request, keyid: str, nonce: str, now: float, charges: Sequence[Charge]
) -> Admission:
    """Spend the nonce, then charge the limits (one Redis round trip); 401 on a replay.

    PostgreSQL is the one record of spent nonces (PROTOCOL.md 2 r2). A replay is
    refused however Redis fares: captured just before Redis failed, replayed to a
    replica that cannot reach Redis while another can, or replayed after Redis
    returns, since no replica ever asks Redis about a nonce. Redis keeps the limits,
    which fall back to per-process counting while it is unreachable.
    """
    if not await _spend_nonce_in_db(request, keyid, nonce, now):
        raise _replayed()
    if not charges:
        return Admission(True, ())
    return await request.app[state.LIMITER].admit(charges)


def _replayed() -> Unauthorized:
    return Unauthorized("This nonce was already used with this key.", code="replayed_request")


async def _spend_nonce_in_db(request: web.Request, keyid: str, nonce: str, now: float) -> bool:
    async with request.app[state.POOL].acquire() as conn:
        fresh: bool = await nonce_store.remember(
            conn, keyid, nonce, to_datetime(now), NONCE_TTL_SECONDS
        )
    return fresh


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """A node request whose signature and entitlement hold; its nonce is not spent yet."""

    caller: NodeCaller
    nonce: str
    now: float


async def verify_node(request: web.Request, body: bytes, feature: str | None) -> VerifiedRequest:
    """Section 2's checks up to the nonce, then the entitlement to `feature` (section 4).

    The nonce is spent by `admit`, together with the request's rate limits, in one
    Redis round trip once the route knows what the request costs.
    """
    sig, now = await _check_signature(request, body)  # a malformed keyid ends here
    async with request.app[state.AUTH_GUARD].lookup(request):
        identity = await request.app[state.DIRECTORY].get(sig.keyid)
    now_dt = to_datetime(now)
    if identity is None or not identity.key_usable(now_dt):
        raise Unauthorized("The signing key is not known to this hub.", code="unknown_key")
    _verify_with(request, sig, identity.public_key, body, enrolled=True)
    check_node(identity, now_dt, feature)
    caller = NodeCaller(identity)
    request[state.CALLER] = caller
    return VerifiedRequest(caller, sig.nonce, now)


Charge = tuple[str, Limit, int]


async def admit(
    request: web.Request, verified: VerifiedRequest, charges: Sequence[Charge] = ()
) -> tuple[Window, ...]:
    """Spend the request's nonce and charge its limits, all or nothing.

    One Redis round trip (ratelimit.RateLimiter.admit); while Redis is unreachable the
    nonce goes to PostgreSQL and the limits are counted per process. Raises 401
    `replayed_request` or 429 `rate_limited` (with the refused policy's fields).
    """
    admission = await _admission(
        request, verified.caller.keyid, verified.nonce, verified.now, charges
    )
    if not admission.allowed:
        policy = charges[_refused_index(admission, charges)][0]
        spent = quota_of(
            policy, [w for c, w in zip(charges, admission.windows, strict=True) if c[0] == policy]
        )
        request.app[state.METRICS].rate_limited.labels(policy).inc()
        raise refusal(spent)
    return admission.windows


def _refused_index(admission: Admission, charges: Sequence[Charge]) -> int:
    """Which charge the limiter refused: its own answer, never re-derived from the
    windows (rounding could find none there and turn a 429 into a 500)."""
    if admission.refused is not None:
        return admission.refused
    return next((i for i, (_, _, cost) in enumerate(charges) if cost > 0), 0)


async def authenticate_node(request: web.Request, body: bytes, feature: str | None) -> NodeCaller:
    """Verify a node's signed request, its entitlement to `feature`, and spend its nonce."""
    verified = await verify_node(request, body, feature)
    await admit(request, verified)
    return verified.caller


async def authenticate_new_key(request: web.Request, body: bytes, public_key: bytes) -> str:
    """Enrollment: the request is signed with the key it enrolls (proof of possession).

    Returns the keyid. A keyid that is not the id of `public_key` is `invalid_signature`.
    """
    sig, now = await _check_signature(request, body)
    keyid = keyid_of(public_key)
    if not hmac.compare_digest(sig.keyid, keyid):
        raise Unauthorized(
            "The signature's keyid is not the id of the enrolled public key.",
            code="invalid_signature",
        )
    _verify_with(request, sig, public_key, body, enrolled=False)
    await _spend_nonce(request, keyid, sig.nonce, now)
    return keyid


async def authenticate_token(request: web.Request, role: str) -> TokenCaller:
    """A valid bearer token of exactly `role`; another valid token is 403, never 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("A bearer token is required.", headers=_CHALLENGE)
    if not well_formed_bearer(token):
        raise Unauthorized("The bearer token is unknown, revoked or expired.", headers=_CHALLENGE)
    pool = request.app[state.POOL]
    async with request.app[state.AUTH_GUARD].lookup(request), pool.acquire() as conn:
        row = await token_store.by_hash(conn, hash_token(token))
    now = to_datetime(now_of(request))
    if (
        row is None
        or not hmac.compare_digest(bytes(row["token_hash"]), hash_token(token))
        or row["revoked_at"] is not None
        or (row["expires_at"] is not None and row["expires_at"] <= now)
    ):
        raise Unauthorized("The bearer token is unknown, revoked or expired.", headers=_CHALLENGE)
    request[state.IDENTIFIED] = True
    caller = TokenCaller(
        token_id=row["id"],
        role=row["role"],
        scope=row["scope"],
        scope_tenant_id=row["scope_tenant_id"],
        name=row["name"],
    )
    request[state.CALLER] = caller
    if caller.role != role:
        raise Forbidden(f"This route needs a {role} token.")
    return caller


def client_address(
    request: web.Request, config: Config
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The real client: the peer, or, when the peer is a trusted proxy, the right-most
    X-Forwarded-For address that is not itself a trusted proxy (PROTOCOL.md 9)."""
    addr = _parse_ip(request.remote or "")
    if addr is not None and config.trusted_proxies and _trusted(addr, config):
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        for item in reversed(forwarded.split(",")):
            candidate = _parse_ip(item.strip())
            if candidate is None:
                break
            addr = candidate
            if not _trusted(candidate, config):
                break
    return addr


def source_address(request: web.Request, config: Config) -> str:
    """The key rate limits count by: the client address, IPv6 per /64."""
    addr = client_address(request, config)
    if addr is None:
        return request.remote or "unknown"
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, config: Config) -> bool:
    return any(addr.version == net.version and addr in net for net in config.trusted_proxies)


def _failed_auth_limit(request: web.Request) -> Limit:
    key = source_address(request, request.app[state.CONFIG])
    return Limit(per_minute(FAILED_AUTH_PER_MINUTE), key)


def _failed_auth_refusal() -> RateLimited:
    return RateLimited(
        "Too many failed authentications from this address; retry later.",
        headers={"Retry-After": "60"},
    )


async def refuse_enrollment_past_failed_auth(request: web.Request) -> None:
    """Past the failed-authentication limit, an address may not enroll at all.

    An enrollment's signature proves only possession of a new key, so the limit refuses
    enrollment requests outright, not only the failing ones (PROTOCOL.md section 9):
    otherwise a 201 among 429s would still tell a token guesser it guessed right.
    """
    limit = _failed_auth_limit(request)
    if await request.app[state.LIMITER].used("authfail", limit) >= limit.item.amount:
        request.app[state.AUTH_GUARD].mark(limit.key)
        request.app[state.METRICS].rate_limited.labels("authfail").inc()
        raise _failed_auth_refusal()


async def charge_failed_auth(request: web.Request) -> RateLimited | None:
    """Count a failed authentication for the source address; past 30 a minute, a 429.

    Never applied to a request that proved a known identity (PROTOCOL.md section 9).
    """
    if request.get(state.IDENTIFIED):
        return None
    app = request.app
    limit = _failed_auth_limit(request)
    if (await app[state.LIMITER].admit([("authfail", limit, 1)])).allowed:
        return None
    app[state.AUTH_GUARD].mark(limit.key)
    app[state.METRICS].rate_limited.labels("authfail").inc()
    return _failed_auth_refusal()
