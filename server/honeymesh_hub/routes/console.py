"""The reviewer console: static files shipped in the wheel, served under /console/.

The page holds no secret and needs no authentication; it talks only to the public
reviewer and admin API with the token the reviewer types, kept in sessionStorage.
Every console response carries a strict Content-Security-Policy: no inline script or
style, nothing from elsewhere, no framing.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from ..errors import NotFound

routes = web.RouteTableDef()

FILES = {
    "": ("index.html", "text/html"),
    "index.html": ("index.html", "text/html"),
    "app.js": ("app.js", "text/javascript"),
    "verify.js": ("verify.js", "text/javascript"),
    "style.css": ("style.css", "text/css"),
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@routes.get("/console")
async def console_root(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/console/")


@routes.get("/console/{name:[A-Za-z0-9._-]*}")
async def console_file(request: web.Request) -> web.Response:
    found = FILES.get(request.match_info["name"])
    if found is None:
        raise NotFound("No such console file.")
    name, content_type = found
    body = (resources.files("honeymesh_hub") / "console" / name).read_bytes()
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)
