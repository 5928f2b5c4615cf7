"""The transparency log's endpoints (PROTOCOL.md 15 r2): logs, checkpoints, proofs,
leaves, frontiers, for a signed node request or a reader key; cosignatures for nodes.

A caller sees exactly the logs of the scopes its feed shows it; any other log is 404,
whether or not it exists. Sizes past the latest checkpoint are 422.
"""

from __future__ import annotations

from aiohttp import web

from honeymesh_client.protocol import note
from honeymesh_client.protocol.tlogleaf import log_of_scope

from .. import state
from ..admission import admit, admit_reader
from ..auth import authenticate_reader, verify_node
from ..bodies import check, parse_json, read_body
from ..errors import NotFound, ValidationFailed
from ..ratelimit import Limit, per_minute, quota_of
from ..services import tlog
from ..services.feed import scopes_of, scopes_of_reader
from ..tlog import LogKey, b64, scope_of_log
from .common import json_response, now

routes = web.RouteTableDef()

MAX_LEAVES = 1000
MAX_COSIGNATURES = 16
_BIG = 2**62


async def _visible_logs(request: web.Request) -> tuple[list[str], dict[str, str]]:
    """The logs the caller may see, and its pull quota's headers: a signed node
    request (Signature-Input) or a reader key, each charged as a pull."""
    if "Signature-Input" in request.headers:
        verified = await verify_node(request, await read_body(request), "pull")
        caller = verified.caller
        pull = Limit(
            per_minute(caller.identity.tenant.limits["pull_per_minute"]), str(caller.node_id)
        )
        windows = await admit(request, verified, [("pull", pull, 1)])
        scopes = scopes_of(caller)
    else:
        reader = await authenticate_reader(request)
        windows = await admit_reader(request, reader)
        scopes = scopes_of_reader(reader)
    return [log_of_scope(s) for s in sorted(scopes)], quota_of("pull", windows).headers()


async def _log(request: web.Request) -> tuple[str, int, dict[str, str]]:
    """The path's log, if the caller may see it, with its size now."""
    logs, headers = await _visible_logs(request)
    log = request.match_info["log"]
    if log not in logs:
        raise NotFound("No such log.")
    async with request.app[state.POOL].acquire() as conn:
        size = (await tlog.sizes(conn, [log])).get(log, 0)
    return log, size, headers


def _int(request: web.Request, name: str, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise ValidationFailed(
            f"Query parameter {name} must be an integer from 0.",
            errors=[{"pointer": f"/query/{name}", "detail": "must be an integer from 0"}],
        )
    value = int(raw)
    if value > high:
        raise ValidationFailed(
            f"Query parameter {name} is past the latest checkpoint's size, {high}.",
            errors=[{"pointer": f"/query/{name}", "detail": f"must be at most {high}"}],
        )
    return value


def _key(request: web.Request) -> LogKey:
    key: LogKey = request.app[state.LOG_KEY]
    return key


@routes.get("/v1/transparency/logs")
async def get_logs(request: web.Request) -> web.Response:
    logs, headers = await _visible_logs(request)
    key = _key(request)
    async with request.app[state.POOL].acquire() as conn:
        size = await tlog.sizes(conn, logs)
    listed = [
        {
            "log": log,
            "origin": key.origin_of(log),
            "verifier_key": key.verifier_key,
            "size": size.get(log, 0),
        }
        for log in logs
    ]
    return json_response({"logs": listed}, headers=headers)


def _text(body: str, headers: dict[str, str]) -> web.Response:
    return web.Response(text=body, content_type="text/plain", charset="utf-8", headers={**headers})


@routes.get("/v1/transparency/{log}/checkpoint")
async def get_checkpoint(request: web.Request) -> web.Response:
    log, size, headers = await _log(request)
    cosigned = request.query.get("cosigned", "false")
    if cosigned not in ("true", "false"):
        raise ValidationFailed(
            "Query parameter cosigned must be true or false.",
            errors=[{"pointer": "/query/cosigned", "detail": "must be true or false"}],
        )
    key = _key(request)
    async with request.app[state.POOL].acquire() as conn:
        if cosigned == "false":
            root = await tlog.root_at(conn, log, size)
            return _text(key.checkpoint(log, size, root), headers)
        at, lines = await tlog.latest_cosigned(conn, log, MAX_COSIGNATURES)
        if at is None:
            raise NotFound("No checkpoint of this log has been cosigned yet.")
        root = await tlog.root_at(conn, log, at)
    return _text(key.checkpoint(log, at, root) + "".join(lines), headers)


@routes.get("/v1/transparency/{log}/proof/inclusion")
async def get_inclusion(request: web.Request) -> web.Response:
    log, head, headers = await _log(request)
    size = _int(request, "size", head)
    index = _int(request, "index", _BIG)
    if index >= size:
        raise ValidationFailed(
            "Query parameter index must be below size.",
            errors=[{"pointer": "/query/index", "detail": "must be below size"}],
        )
    async with request.app[state.POOL].acquire() as conn:
        leaf_hash, hashes = await tlog.inclusion(conn, log, index, size)
    return json_response(
        {"index": index, "size": size, "leaf_hash": b64(leaf_hash), "hashes": _b64s(hashes)},
        headers=headers,
    )


@routes.get("/v1/transparency/{log}/proof/consistency")
async def get_consistency(request: web.Request) -> web.Response:
    log, head, headers = await _log(request)
    second = _int(request, "to", head)
    first = _int(request, "from", second)
    async with request.app[state.POOL].acquire() as conn:
        hashes = await tlog.consistency(conn, log, first, second)
    return json_response({"from": first, "to": second, "hashes": _b64s(hashes)}, headers=headers)


@routes.get("/v1/transparency/{log}/leaves")
async def get_leaves(request: web.Request) -> web.Response:
    log, head, headers = await _log(request)
    end = _int(request, "end", _BIG)
    start = _int(request, "start", end)
    if end - start > MAX_LEAVES:
        raise ValidationFailed(
            f"At most {MAX_LEAVES} leaves a request.",
            errors=[{"pointer": "/query/end", "detail": f"at most start + {MAX_LEAVES}"}],
        )
    end = _int(request, "end", head)
    scope = scope_of_log(log)
    assert scope is not None  # a visible log is one of the caller's scopes
    async with request.app[state.POOL].acquire() as conn:
        leaves = await tlog.leaves(conn, scope, start, end)
    return json_response({"leaves": _b64s(leaves)}, headers=headers)


@routes.get("/v1/transparency/{log}/frontier")
async def get_frontier(request: web.Request) -> web.Response:
    log, head, headers = await _log(request)
    size = _int(request, "size", head)
    async with request.app[state.POOL].acquire() as conn:
        hashes = await tlog.frontier(conn, log, size)
    return json_response({"size": size, "hashes": _b64s(hashes)}, headers=headers)


@routes.post("/v1/transparency/{log}/cosignatures")
async def post_cosignature(request: web.Request) -> web.Response:
    body = await read_body(request)
    verified = await verify_node(request, body, "pull")
    caller = verified.caller
    log = request.match_info["log"]
    if log not in [log_of_scope(s) for s in scopes_of(caller)]:
        raise NotFound("No such log.")
    data = parse_json(request, body)
    check("cosignature-create", data)
    pull = Limit(per_minute(caller.identity.tenant.limits["pull_per_minute"]), str(caller.node_id))
    windows = await admit(request, verified, [("pull", pull, 1)])
    key = _key(request)
    text = _checkpoint_text(data["checkpoint"])
    name = f"node-{caller.node_id}"
    node_key = note.Verifier(
        name, note.key_hash(name, caller.identity.public_key), caller.identity.public_key
    )
    line = data["signature"] if data["signature"].endswith("\n") else data["signature"] + "\n"
    try:
        cp = note.parse_checkpoint(text)
        opened = note.open_note(text + "\n" + line, [node_key])
    except note.NoteError as exc:
        raise _unverified(f"The cosignature does not verify: {exc}.") from None
    if opened.names != (name,) or len(opened.verified) != 1:
        raise _unverified(f"The signature is not one by {name}'s current key.")
    async with request.app[state.POOL].acquire() as conn:
        size = (await tlog.sizes(conn, [log])).get(log, 0)
        signed = (
            cp.origin == key.origin_of(log)
            and cp.size <= size
            and not cp.extensions
            and cp.root == await tlog.root_at(conn, log, cp.size)
        )
        if not signed:
            raise _unverified("The hub never signed that checkpoint of this log.")
        await tlog.add_cosignature(conn, log, cp.size, caller.node_id, line, now(request))
    return json_response(
        {"log": log, "size": cp.size}, status=201, headers=quota_of("pull", windows).headers()
    )


def _checkpoint_text(value: str) -> str:
    """The checkpoint body of a note, or the body as it was sent."""
    text, sep, _ = value.partition("\n\n")
    return text + "\n" if sep else value


def _unverified(detail: str) -> ValidationFailed:
    return ValidationFailed(detail, errors=[{"pointer": "/signature", "detail": detail}])


def _b64s(values: list[bytes]) -> list[str]:
    return [b64(v) for v in values]
