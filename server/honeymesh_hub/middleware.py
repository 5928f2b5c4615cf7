"""The one place where failures become RFC 9457 problem+json (PROTOCOL.md section 3).

Also: the request id (echoed as X-Request-Id and carried in every log line), the
1 MiB body cap, and per-route metrics. Whether a failure is answered with the
failed-authentication limit of section 9 instead is admission.py's to say.
A HubError maps to its own status and code; a database that cannot be reached is a
503 with Retry-After; anything else is a logged 500 whose body says nothing inside.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from . import state, taxii
from .admission import failed_auth_answer
from .bodies import MAX_BODY
from .errors import (
    HubError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    title_of,
)
from .logs import request_id_var

log = logging.getLogger("honeymesh.http")

SLOW_SECONDS = 1.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{8,64}$")
_DB_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    # A server shutting down ends the statements in flight (57P01, 57P02), and a pooled
    # connection caught mid-error by it refuses the next statement with an internal
    # state error: both mean the database went away (tests/e2e/test_scaleout.py).
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(error: HubError, request_id: str | None = None) -> web.Response:
    body: dict[str, object] = {
        "type": f"urn:honeymesh:problem:{error.code}",
        "title": title_of(error),
        "status": error.status,
        "code": error.code,
        "detail": error.detail,
    }
    if error.errors:
        body["errors"] = error.errors
    body.update(error.extra)
    if request_id:
        body["request_id"] = request_id
    return web.Response(
        status=error.status,
        body=json.dumps(body).encode(),
        content_type="application/problem+json",
        headers=error.headers,
    )


def taxii_problem(error: HubError) -> web.Response:
    """A TAXII 2.1 error message (PROTOCOL.md 14 r2) for every failure under /taxii2/."""
    return web.Response(
        status=error.status,
        body=taxii.error_json(error.status, title_of(error), error.detail),
        headers={**error.headers, "Content-Type": taxii.TAXII},
    )


def _answer(request: web.Request, error: HubError, request_id: str) -> web.Response:
    if request.path.startswith("/taxii2/"):
        return taxii_problem(error)
    return problem(error, request_id)


def _from_http(exc: web.HTTPException) -> HubError:
    if exc.status == 404:
        return NotFound("No such resource.")
    if exc.status == 413:
        return PayloadTooLarge("A request body is at most 1 MiB.")
    if exc.status == 405:
        return HubError(
            "This method is not allowed on this resource.",
            code="method_not_allowed",
            headers={"Allow": exc.headers.get("Allow", "")},
        ).with_status(405)
    return HubError(exc.reason, code="http_error").with_status(exc.status)


@web.middleware
async def hub_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[state.REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        if (request.content_length or 0) > MAX_BODY:
            raise PayloadTooLarge("A request body is at most 1 MiB.")
        response = await handler(request)
    except HubError as exc:
        response = _answer(request, await failed_auth_answer(request, exc), request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _answer(request, _from_http(exc), request_id)
    except _DB_DOWN as exc:
        log.warning("database unreachable", extra={"fields": {"error": type(exc).__name__}})
        response = _answer(
            request,
            ServiceUnavailable(
                "The hub cannot reach its database; retry shortly.",
                headers={"Retry-After": "5"},
            ),
            request_id,
        )
    except Exception:
        log.exception("unhandled error", extra={"fields": {"path": request.path}})
        response = _answer(request, HubError("The hub failed to handle this request."), request_id)
    finally:
        request_id_var.reset(token)
    elapsed = time.perf_counter() - started
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    metrics = request.app[state.METRICS]
    metrics.requests.labels(route_name, str(response.status)).inc()
    metrics.latency.labels(route_name).observe(elapsed)
    if response.status >= 500 or elapsed > SLOW_SECONDS + request.get(state.WAITS, 0.0):
        log.info(
            "request",
            extra={
                "fields": {
                    "request_id": request_id,
                    "method": request.method,
                    "route": route_name,
                    "status": response.status,
                    "ms": round(elapsed * 1000, 1),
                }
            },
        )
    response.headers["X-Request-Id"] = request_id
    return response
