"""Who is calling: a node by its RFC 9421 signature, or a bearer token.

PROTOCOL.md section 2 fixes the order of checks. Identity is settled before anything
else (entitlement, tenant state), so a bad request learns nothing about another
node's tenant. What the caller may then do (nonce, limits, the failed-auth limit) is
admission.py's; the caller types are in callers.py, the key cache in keydirectory.py.
"""

from __future__ import annotations

import base64
import hmac
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import web

from honeymesh_client.protocol import signing
from honeymesh_client.protocol.errors import ProtocolError
from honeymesh_client.protocol.keys import keyid_of

from . import state
from .admission import VerifiedRequest, admit, spend_nonce
from .callers import NodeCaller, ReaderCaller, TokenCaller
from .clientaddress import source_address
from .clock import to_datetime
from .entitlements import check_node, check_reader
from .errors import Forbidden, HubError, Unauthorized
from .store import tokens as token_store
from .tokens import hash_token, well_formed_bearer, well_formed_reader_key

# RFC 9110 section 11.6.1: a 401 carries the challenge of the scheme it wants (RFC 6750).
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="honeymesh"'}
# A reader may send its key as a bearer token or as a Basic password (PROTOCOL.md 13).
_READER_CHALLENGE = {"WWW-Authenticate": 'Basic realm="honeymesh", Bearer realm="honeymesh"'}


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
        if exc.code == "missing_signature":
            await _refuse_reader_key(request)
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


def _guarded_lookup(request: web.Request) -> AbstractAsyncContextManager[None]:
    """Around a credential lookup: bounded when the request's source is flooding."""
    source = source_address(request, request.app[state.CONFIG])
    return request.app[state.AUTH_GUARD].lookup(source)


async def verify_node(request: web.Request, body: bytes, feature: str | None) -> VerifiedRequest:
    """Section 2's checks up to the nonce, then the entitlement to `feature` (section 4).

    The nonce is spent by `admission.admit`, together with the request's rate limits,
    once the route knows what the request costs.
    """
    sig, now = await _check_signature(request, body)  # a malformed keyid ends here
    async with _guarded_lookup(request):
        identity = await request.app[state.DIRECTORY].get(sig.keyid)
    now_dt = to_datetime(now)
    if identity is None or not identity.key_usable(now_dt):
        raise Unauthorized("The signing key is not known to this hub.", code="unknown_key")
    _verify_with(request, sig, identity.public_key, body, enrolled=True)
    check_node(identity, now_dt, feature)
    caller = NodeCaller(identity)
    request[state.CALLER] = caller
    return VerifiedRequest(caller, sig.nonce, now)


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
    await spend_nonce(request, keyid, sig.nonce, now)
    return keyid


async def authenticate_token(request: web.Request, role: str) -> TokenCaller:
    """A valid bearer token of exactly `role`; another valid token is 403, never 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        await _refuse_reader_key(request)
        raise Unauthorized("A bearer token is required.", headers=_CHALLENGE)
    if not well_formed_bearer(token):
        await _refuse_reader_key(request)
        raise Unauthorized("The bearer token is unknown, revoked or expired.", headers=_CHALLENGE)
    pool = request.app[state.POOL]
    async with _guarded_lookup(request), pool.acquire() as conn:
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


def reader_key_of(headers: Any) -> str | None:
    """The reader key a request carries (PROTOCOL.md 13 r2), or None.

    `X-Api-Key: <key>`, `Authorization: Bearer <key>`, `Authorization: Token <key>`, or
    HTTP Basic with any user name and the key as the password (RFC 7617: the user id
    ends at the first colon). A credential sent twice, two that differ, or a header
    that does not parse is no key at all: an ambiguous request is refused, never
    guessed at. Pure: no lookup.
    """
    api_keys = headers.getall("X-Api-Key", [])
    authorizations = headers.getall("Authorization", [])
    if len(api_keys) > 1 or len(authorizations) > 1:
        return None
    found = [api_keys[0].strip()] if api_keys else []
    if authorizations:
        from_authorization = _key_of_authorization(authorizations[0])
        if from_authorization is None:
            return None
        found.append(from_authorization)
    if not found or any(k != found[0] for k in found):
        return None
    return found[0] or None


def _key_of_authorization(value: str) -> str | None:
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        return credentials or None
    if scheme != "basic" or len(credentials) > 1024:
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


async def authenticate_reader(request: web.Request, *, refusal_status: int = 401) -> ReaderCaller:
    """The reader key of the request (PROTOCOL.md 13 r2), for the reader routes.

    A missing, malformed, unknown, revoked or expired key is refused with
    `refusal_status`: 401 `unauthorized` (with a Basic and Bearer challenge), or 403
    `forbidden` on the CrowdSec routes. A known key whose tenant is suspended, past its
    `expires_at` or without `pull` is 403 (`tenant_suspended`, `entitlement_expired`,
    `not_entitled`). Every refusal counts as a failed authentication (section 9, in
    admission.py). A malformed key is refused without a lookup; the stored hash is
    compared in constant time; a key is at most a couple of seconds stale
    (keydirectory.ReaderDirectory).
    """
    try:
        return await _reader(request, refusal_status)
    except HubError:
        request[state.READER_REFUSED] = True
        raise


async def _reader(request: web.Request, refusal_status: int) -> ReaderCaller:
    key = reader_key_of(request.headers)
    if key is None:
        raise _unknown_reader(refusal_status, "A reader key is required.")
    if not well_formed_reader_key(key):
        raise _unknown_reader(refusal_status, "The reader key is unknown, revoked or expired.")
    key_hash = hash_token(key)
    async with _guarded_lookup(request):
        found = await request.app[state.READERS].get(key_hash)
    now = to_datetime(now_of(request))
    if found is None or not hmac.compare_digest(found.key_hash, key_hash) or not found.usable(now):
        raise _unknown_reader(refusal_status, "The reader key is unknown, revoked or expired.")
    check_reader(found.tenant, now)
    caller = ReaderCaller(key_id=found.key_id, tenant=found.tenant, name=found.name)
    request[state.IDENTIFIED] = True
    request[state.CALLER] = caller
    await request.app[state.READERS].touch(found, now)
    request.app[state.READER_USAGE].seen(found.key_id, now)
    return caller


async def _refuse_reader_key(request: web.Request) -> None:
    """On a route that needs another credential, a valid reader key is 403 `forbidden`:
    it reads and does nothing else (PROTOCOL.md 13 r2). An unknown, revoked or expired
    one is no credential at all, and the route's own 401 follows."""
    key = reader_key_of(request.headers)
    if key is None or not well_formed_reader_key(key):
        return
    key_hash = hash_token(key)
    async with _guarded_lookup(request):
        found = await request.app[state.READERS].get(key_hash)
    now = to_datetime(now_of(request))
    if found is None or not hmac.compare_digest(found.key_hash, key_hash) or not found.usable(now):
        return
    request[state.IDENTIFIED] = True
    raise Forbidden("A reader key only reads: this route needs another credential.")


def _unknown_reader(status: int, detail: str) -> HubError:
    if status == 403:
        return Forbidden(detail)
    return Unauthorized(detail, headers=_READER_CHALLENGE)
