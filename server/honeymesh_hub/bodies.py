"""Request bodies: media type, size, I-JSON, and JSON Schema shape (PROTOCOL.md 3).

U+0000 anywhere in a body is refused by the parser itself, as invalid_json (r2).

Schemas are the files under `honeymesh_hub/schemas/`, compiled once with fastjsonschema;
a shape error is a 422 whose `errors` carry a JSON pointer to the offending member.
"""

from __future__ import annotations

from typing import Any

import fastjsonschema
from aiohttp import web

from honeymesh_client.protocol import ijson
from honeymesh_client.protocol.errors import ProtocolError

from .errors import InvalidJSON, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from .shapes import explain, validator

MAX_BODY = 1024 * 1024


async def read_body(request: web.Request) -> bytes:
    if not request.body_exists:
        return b""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("A request body is at most 1 MiB.") from None


def parse_json(request: web.Request, body: bytes) -> Any:
    """415 unless the body is application/json; 400 unless it is I-JSON."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.")
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("Bodies are UTF-8.")
    try:
        return ijson.loads(body)
    except ProtocolError as exc:
        raise InvalidJSON(exc.detail) from None


async def json_body(request: web.Request, schema: str) -> Any:
    """Read, parse and shape-check a body in one go (routes without signatures)."""
    data = parse_json(request, await read_body(request))
    check(schema, data)
    return data


def check(name: str, data: Any) -> None:
    try:
        validator(name)(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        pointer, detail = explain(exc)
        raise ValidationFailed(detail, errors=[{"pointer": pointer, "detail": detail}]) from None
