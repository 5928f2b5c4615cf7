"""Thin handlers: gates, then one service call, then a JSON answer."""

from __future__ import annotations

from aiohttp import web

from . import (
    admin,
    blocklists,
    console,
    crowdsec,
    feed,
    nodes,
    ops,
    review,
    signals,
    taxii,
    transparency,
)


def setup(app: web.Application) -> None:
    for module in (
        ops,
        admin,
        nodes,
        signals,
        feed,
        blocklists,
        crowdsec,
        taxii,
        transparency,
        review,
        console,
    ):
        app.router.add_routes(module.routes)
