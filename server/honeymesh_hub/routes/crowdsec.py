"""CrowdSec Local API, bouncer side (PROTOCOL.md 13.1), under /crowdsec/.

These routes speak CrowdSec's dialect, not section 3: errors are `{"message": ...}`,
a missing or bad key is 403 `{"message": "access forbidden"}`. The failed-
authentication limit of section 9 still applies (admission.failed_auth_answer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_response import ContentCoding

from .. import state
from ..admission import admit_reader, failed_auth_answer
from ..auth import authenticate_reader
from ..bodies import read_body
from ..callers import ReaderCaller
from ..crowdsec import BadLookup, Filters, accepts_gzip, lookup_of
from ..errors import BadRequest, HubError, UnsupportedMediaType, ValidationFailed
from ..ratelimit import quota_of
from ..services import crowdsec
from .common import now

routes = web.RouteTableDef()
log = logging.getLogger("honeymesh.crowdsec")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _message(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        headers=headers,
    )


def _lapi(handler: Handler) -> Handler:
    """HubErrors as CrowdSec answers them: `{"message"}`, 403 `access forbidden`."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HubError as exc:
            error = await failed_auth_answer(request, exc)
            message = "access forbidden" if error.status in (401, 403) else error.detail
            status = 403 if error.status == 401 else error.status
            return _message(status, message, dict(error.headers))

    return wrapped


async def _reader(request: web.Request) -> ReaderCaller:
    return await authenticate_reader(request, refusal_status=403)


def _gzip(request: web.Request, resp: web.StreamResponse) -> None:
    """gzip when Accept-Encoding admits it (aiohttp alone would prefer deflate)."""
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        resp.enable_compression(ContentCoding.gzip)


def _startup(request: web.Request) -> bool:
    value = request.query.get("startup", "false")
    if value not in ("true", "false"):
        raise BadRequest("startup must be true or false")
    return value == "true"


@routes.get("/crowdsec/v1/decisions/stream", allow_head=False)
@_lapi
async def decisions_stream(request: web.Request) -> web.StreamResponse:
    caller = await _reader(request)
    startup = _startup(request)
    filters = Filters.parse(request.query)
    windows = await admit_reader(request, caller, refuse=not startup)
    stream = await crowdsec.open_stream(
        request.app[state.POOL],
        caller,
        startup=startup,
        filters=filters,
        now=now(request),
        pages=request.app[state.STARTUP_PAGES],
    )
    resp = web.StreamResponse(
        headers={**quota_of("pull", windows).headers(), "Cache-Control": "no-cache"}
    )
    resp.content_type = "application/json"
    # Sent with the head: the middleware's own comes after the body has gone.
    resp.headers["X-Request-Id"] = request[state.REQUEST_ID]
    if stream.startup and accepts_gzip(request.headers.get("Accept-Encoding", "")):
        # Shared deflate blocks (services/startuppages.py), not a compressor per answer.
        resp.headers["Content-Encoding"] = "gzip"
        chunks = stream.gzip_chunks()
    else:
        _gzip(request, resp)
        chunks = stream.chunks()
    await resp.prepare(request)
    try:
        async for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
    except ConnectionError:
        # The bouncer went away mid-answer: the position stays, and its next poll
        # gets these changes again. Nothing to answer, nothing worth a traceback.
        log.info("crowdsec answer not delivered", extra={"fields": {"key": str(caller.key_id)}})
        return resp
    # Only now is the whole answer written: an answer that was not is served again
    # (and is no poll in the key's usage).
    request.app[state.READER_USAGE].served(
        caller.key_id, "crowdsec_stream", stream.served, now(request)
    )
    await stream.delivered()
    return resp


@routes.get("/crowdsec/v1/decisions", allow_head=False)
@_lapi
async def decisions(request: web.Request) -> web.StreamResponse:
    caller = await _reader(request)
    try:
        lookup = lookup_of(request.query)
    except BadLookup as exc:
        raise BadRequest(str(exc)) from None
    windows = await admit_reader(request, caller)
    found = await crowdsec.lookup(request.app[state.POOL], caller, lookup, now(request))
    request.app[state.READER_USAGE].served(
        caller.key_id, "crowdsec_lookup", len(found), now(request)
    )
    resp = web.Response(
        body=json.dumps(found or None).encode(),
        content_type="application/json",
        headers=quota_of("pull", windows).headers(),
    )
    _gzip(request, resp)
    return resp


@routes.head("/crowdsec/v1/decisions/stream")
@routes.head("/crowdsec/v1/decisions")
@_lapi
async def head(request: web.Request) -> web.StreamResponse:
    await _reader(request)
    return web.Response(status=200)


@routes.post("/crowdsec/v1/usage-metrics")
@_lapi
async def usage_metrics(request: web.Request) -> web.StreamResponse:
    await _reader(request)
    # At most 1 MiB (bodies.MAX_BODY), a JSON object as CrowdSec's; then dropped, so
    # it is parsed leniently (not held to I-JSON: nothing of it is stored or signed).
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        metrics = json.loads(await read_body(request))
    except ValueError:
        raise BadRequest("The body is not JSON.") from None
    if not isinstance(metrics, dict):
        raise ValidationFailed("The usage metrics are a JSON object.")
    return web.Response(status=201)
