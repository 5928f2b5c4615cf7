"""TAXII 2.1, read-only, for reader keys (PROTOCOL.md 14 r2). Every answer's
Content-Type is exactly `application/taxii+json;version=2.1`; errors are TAXII error
messages (middleware.py renders them for every path under /taxii2/, 404 and 405
included: only GET and HEAD are routed)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .. import state, taxii
from ..admission import admit_reader
from ..auth import authenticate_reader
from ..errors import HubError, ValidationFailed
from ..ratelimit import quota_of
from ..services.taxii import Page
from .common import now

routes = web.RouteTableDef()

ROOT = "/taxii2/honeymesh/"
COLLECTION = ROOT + "collections/{collection_id}/"


class NotAcceptable(HubError):
    status = 406
    code = "not_acceptable"
    title = "Not acceptable"


def _json(body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return _answer(json.dumps(body).encode(), headers)


def _answer(body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, headers={**(headers or {}), "Content-Type": taxii.TAXII})


async def _reader(request: web.Request) -> tuple[Any, dict[str, str]]:
    caller = await authenticate_reader(request)
    if not taxii.acceptable(request.headers.get("Accept")):
        raise NotAcceptable(f"This server answers {taxii.TAXII} only.")
    windows = await admit_reader(request, caller)
    return caller, quota_of("pull", windows).headers()


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


@routes.get("/taxii2/")
async def discovery(request: web.Request) -> web.Response:
    _, headers = await _reader(request)
    root = _origin(request) + ROOT
    return _json(
        {
            "title": "HoneyMesh Hub",
            "description": "Approved HoneyMesh decisions as STIX 2.1 indicators.",
            "default": root,
            "api_roots": [root],
        },
        headers,
    )


@routes.get(ROOT)
async def api_root(request: web.Request) -> web.Response:
    _, headers = await _reader(request)
    return _json(
        {
            "title": "HoneyMesh decisions",
            "versions": [taxii.TAXII],
            "max_content_length": taxii.MAX_CONTENT_LENGTH,
        },
        headers,
    )


@routes.get(ROOT + "collections/")
async def collections(request: web.Request) -> web.Response:
    caller, headers = await _reader(request)
    found = request.app[state.SERVICES].taxii.collections(caller)
    return _json({"collections": [c.resource() for c in found]}, headers)


@routes.get(COLLECTION)
async def collection(request: web.Request) -> web.Response:
    caller, headers = await _reader(request)
    found = request.app[state.SERVICES].taxii.collection(
        caller, request.match_info["collection_id"]
    )
    return _json(found.resource(), headers)


async def _page(request: web.Request, endpoint: str, object_id: str | None = None) -> web.Response:
    caller, headers = await _reader(request)
    service = request.app[state.SERVICES].taxii
    found = service.collection(caller, request.match_info["collection_id"])
    if object_id is not None:
        object_id = object_id.lower() if taxii.object_id(object_id.lower()) else object_id
    try:
        query = taxii.parse_query(request.query)
        after = None
        token = request.query.get("next")
        if token is not None:
            limit = query.limit if "limit" in request.query else None
            query, after = service.read_token(token, found, endpoint, object_id)
            if limit is not None:
                query = taxii.with_limit(query, limit)
    except (taxii.QueryError, taxii.TokenError) as exc:
        raise ValidationFailed(str(exc)) from exc
    page: Page = await service.page(found, endpoint, query, after, _origin(request), object_id)
    request.app[state.READER_USAGE].served(caller.key_id, "taxii", page.count, now(request))
    if page.first is not None and page.last is not None:
        headers["X-TAXII-Date-Added-First"] = page.first
        headers["X-TAXII-Date-Added-Last"] = page.last
    return _answer(page.body, headers)


@routes.get(COLLECTION + "objects/")
async def objects(request: web.Request) -> web.Response:
    return await _page(request, "objects")


@routes.get(COLLECTION + "manifest/")
async def manifest(request: web.Request) -> web.Response:
    return await _page(request, "manifest")


@routes.get(COLLECTION + "objects/{object_id}/")
async def one_object(request: web.Request) -> web.Response:
    return await _page(request, "object", request.match_info["object_id"])


@routes.get(COLLECTION + "objects/{object_id}/versions/")
async def versions(request: web.Request) -> web.Response:
    return await _page(request, "versions", request.match_info["object_id"])
