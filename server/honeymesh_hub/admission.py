"""Whether a request that proved who it is may go on: its nonce, its limits, and the
failed-authentication limit of its source address (PROTOCOL.md sections 2 and 9).

Nonces are spent in PostgreSQL alone (PROTOCOL.md 2 r2); Redis keeps the limits,
which fall back to per-process counting while it is unreachable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from . import state
from .callers import NodeCaller, ReaderCaller
from .clientaddress import source_address
from .clock import to_datetime
from .errors import HubError, RateLimited, Unauthorized
from .ratelimit import Admission, Limit, Window, per_minute, quota_of, refusal

NONCE_TTL_SECONDS = 600
FAILED_AUTH_PER_MINUTE = 30

Charge = tuple[str, Limit, int]


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """A node request whose signature and entitlement hold; its nonce is not spent yet."""

    caller: NodeCaller
    nonce: str
    now: float


async def spend_nonce(request: web.Request, keyid: str, nonce: str, now: float) -> None:
    """The nonce alone (enrollment)."""
    await _admission(request, keyid, nonce, now, ())


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
    return _allowed_or_refused(request, admission, charges)


async def admit_reader(
    request: web.Request, caller: ReaderCaller, *, refuse: bool = True
) -> tuple[Window, ...]:
    """Charge one request of a reader key against its tenant's `pull_per_minute`,
    counted per key (PROTOCOL.md sections 9 and 13 r2); 429 `rate_limited` past it.

    `refuse=False` (a CrowdSec `startup=true` poll, 13.1: a bouncer exits when its
    first request fails) counts the request and never refuses it; past the limit it
    goes through uncounted, the window being full already.

    A reader signs nothing, so there is no nonce to spend: only the limit.
    """
    limit = Limit(per_minute(caller.tenant.limits["pull_per_minute"]), f"reader:{caller.key_id}")
    charges: list[Charge] = [("pull", limit, 1)]
    admission = await request.app[state.LIMITER].admit(charges)
    if not refuse:
        return admission.windows
    return _allowed_or_refused(request, admission, charges)


def _allowed_or_refused(
    request: web.Request, admission: Admission, charges: Sequence[Charge]
) -> tuple[Window, ...]:
    if not admission.allowed:
        policy = charges[_refused_index(admission, charges)][0]
        spent = quota_of(
            policy, [w for c, w in zip(charges, admission.windows, strict=True) if c[0] == policy]
        )
        request.app[state.METRICS].rate_limited.labels(policy).inc()
        raise refusal(spent)
    return admission.windows


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
    # With the other requests of this process in flight, in one insert
    # (services/groupcommit.py): a nonce is spent before its request goes on.
    return await request.app[state.NONCES].spend(keyid, nonce, to_datetime(now))


def _refused_index(admission: Admission, charges: Sequence[Charge]) -> int:
    """Which charge the limiter refused: its own answer, never re-derived from the
    windows (rounding could find none there and turn a 429 into a 500)."""
    if admission.refused is not None:
        return admission.refused
    return next((i for i, (_, _, cost) in enumerate(charges) if cost > 0), 0)


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


async def failed_auth_answer(request: web.Request, error: HubError) -> HubError:
    """What a request that failed with `error` is answered: `error` itself, or, when it
    is a failed authentication past the limit of its source address, a 429."""
    if not _counts_as_failed_auth(request, error):
        return error
    return await charge_failed_auth(request) or error


def _counts_as_failed_auth(request: web.Request, error: HubError) -> bool:
    if error.status == 401 or request.get(state.READER_REFUSED):
        return True
    route = request.match_info.route
    return error.status == 403 and error.code == "forbidden" and route.name == "enroll"


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
