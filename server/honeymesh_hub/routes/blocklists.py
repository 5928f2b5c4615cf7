"""GET /v1/blocklist (PROTOCOL.md 13.2): a reader key's decisions for a firewall."""

from __future__ import annotations

from aiohttp import web

from .. import state
from ..admission import admit_reader
from ..auth import authenticate_reader
from ..ratelimit import quota_of
from ..services import blocklists
from .common import now

routes = web.RouteTableDef()

_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
}


@routes.get("/v1/blocklist")
async def get_blocklist(request: web.Request) -> web.StreamResponse:
    caller = await authenticate_reader(request)
    query = request.query
    fmt, family, listname = query.get("format"), query.get("family"), query.get("listname")
    blocklists.check_query(fmt, family, listname)
    assert fmt is not None
    windows = await admit_reader(request, caller)
    result = await blocklists.render(
        request.app[state.POOL],
        caller,
        fmt=fmt,
        family=int(family) if family else None,
        listname=listname or "honeymesh",
        never=request.app[state.CONFIG].public_addresses,
        now=now(request),
    )
    headers = {
        **quota_of("pull", windows).headers(),
        "Cache-Control": "no-cache",
        "ETag": result.etag,
    }
    usage = request.app[state.READER_USAGE]
    matches = _if_none_match(request)
    if result.etag in matches or "*" in matches:
        usage.served(caller.key_id, "blocklist", 0, now(request))
        return web.Response(status=304, headers=headers)
    usage.served(caller.key_id, "blocklist", result.count, now(request))
    return web.Response(
        body=result.body,
        headers={**headers, "Content-Type": _CONTENT_TYPES.get(fmt, "text/plain; charset=utf-8")},
    )


def _if_none_match(request: web.Request) -> set[str]:
    """The entity tags of If-None-Match (RFC 9110 13.1.2); `*` matches any."""
    tags: set[str] = set()
    for value in request.headers.getall("If-None-Match", []):
        for item in value.split(","):
            tag = item.strip()
            if tag == "*":
                return {"*"} | tags
            if tag.startswith("W/"):
                tag = tag[2:]  # the weak comparison of 13.1.2
            tags.add(tag)
    return tags
