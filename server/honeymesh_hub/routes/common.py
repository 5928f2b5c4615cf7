"""Small helpers every thin handler uses: JSON answers, path ids, paging parameters."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from .. import state
from ..clock import to_datetime
from ..errors import NotFound, ValidationFailed

MAX_PAGE = 500
DEFAULT_PAGE = 100


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def now(request: web.Request) -> datetime:
    return to_datetime(request.app[state.CLOCK]())


def path_uuid(request: web.Request, name: str, what: str) -> uuid.UUID:
    """An id from the path; one that is not a UUID cannot exist, so it is a 404."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"No such {what}.") from None


def _invalid_query(name: str, detail: str) -> ValidationFailed:
    return ValidationFailed(
        f"Query parameter {name} {detail}.",
        errors=[{"pointer": f"/query/{name}", "detail": detail}],
    )


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise _invalid_query(name, f"must be an integer from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise _invalid_query(name, f"must be an integer from {low} to {high}")
    return value


def page_limit(request: web.Request) -> int:
    return query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)


def query_uuid(request: web.Request, name: str) -> uuid.UUID | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _invalid_query(name, "must be a UUID") from None
