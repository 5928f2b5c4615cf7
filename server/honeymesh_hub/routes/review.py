"""Reviewer API (PROTOCOL.md section 7): thin handlers over services.review.

Every route needs a reviewer token: none (or a node's signature alone) is 401, an
admin token 403 (reviewing is a reviewer's act, audited under a reviewer's name).
Query parameters are checked strictly: an unknown or repeated one is 422, so a
mistyped filter never silently widens a page.
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from .. import state
from ..auth import authenticate_token
from ..bodies import check, json_body, parse_json, read_body
from ..errors import ValidationFailed
from ..services import review
from .common import json_response, now, page_limit, path_uuid, query_int

routes = web.RouteTableDef()

DEFAULT_LEASE_SECONDS = 300
_QUEUE_PARAMS = frozenset(
    {"state", "order", "limit", "after", "scenario", "indicator", "min_reporters"}
)
_SCENARIO = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$")
# A prefix of a canonical indicator value: IPv4 or IPv6 text, maybe with a /prefix.
_INDICATOR_PREFIX = re.compile(r"^[0-9a-f.:/]{1,64}$")


async def _reviewer(request: web.Request) -> review.Reviewer:
    return review.Reviewer.of(await authenticate_token(request, "reviewer"))


def _invalid(name: str, detail: str) -> ValidationFailed:
    return ValidationFailed(
        f"Query parameter {name} {detail}.",
        errors=[{"pointer": f"/query/{name}", "detail": detail}],
    )


def _check_params(request: web.Request) -> None:
    for name in request.query:
        if name not in _QUEUE_PARAMS:
            raise _invalid(name, "is not a known parameter")
        if len(request.query.getall(name)) > 1:
            raise _invalid(name, "is given more than once")


def _choice(request: web.Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.query.get(name, default)
    if value not in choices:
        raise _invalid(name, f"must be one of {', '.join(choices)}")
    return value


def _queue_query(request: web.Request, scope_key: str) -> review.QueueQuery:
    _check_params(request)
    order = _choice(request, "order", review.ORDERS, "reporters")
    after = None
    raw_after = request.query.get("after")
    if raw_after is not None:
        try:
            after = review.decode_after(order, raw_after)
        except ValueError as exc:
            raise _invalid(
                "after", f"must be a `next` value this queue gave, in the same order ({exc})"
            ) from None
    scenario = request.query.get("scenario")
    if scenario is not None and (len(scenario) > 128 or not _SCENARIO.match(scenario)):
        raise _invalid("scenario", "must be a scenario name")
    indicator = request.query.get("indicator")
    if indicator is not None:
        indicator = indicator.lower()
        if not _INDICATOR_PREFIX.match(indicator):
            raise _invalid("indicator", "must be the start of an IP address or CIDR range")
    min_reporters = (
        query_int(request, "min_reporters", 0, 0, 1_000_000)
        if "min_reporters" in request.query
        else None
    )
    return review.QueueQuery(
        state=_choice(request, "state", review.STATES, "pending"),
        scope_key=scope_key,
        order=order,
        limit=page_limit(request),
        after=after,
        scenario=scenario,
        indicator_prefix=indicator,
        min_reporters=min_reporters,
    )


@routes.get("/v1/review/stats")
async def get_stats(request: web.Request) -> web.Response:
    reviewer = await _reviewer(request)
    pool, limiter = request.app[state.POOL], request.app[state.LIMITER]
    return json_response(await review.stats(pool, limiter, reviewer, now(request)))


@routes.get("/v1/review/candidates")
async def list_candidates(request: web.Request) -> web.Response:
    reviewer = await _reviewer(request)
    query = _queue_query(request, reviewer.scope_key)
    return json_response(await review.queue(request.app[state.POOL], query, now(request)))


@routes.get("/v1/review/candidates/{id}")
async def get_candidate(request: web.Request) -> web.Response:
    reviewer = await _reviewer(request)
    candidate_id = path_uuid(request, "id", "candidate")
    result = await review.show(request.app[state.POOL], reviewer, candidate_id, now(request))
    return json_response(result)


@routes.post("/v1/review/candidates/{id}/claim")
async def claim_candidate(request: web.Request) -> web.Response:
    reviewer = await _reviewer(request)
    candidate_id = path_uuid(request, "id", "candidate")
    raw = await read_body(request)
    lease_seconds = DEFAULT_LEASE_SECONDS
    if raw:  # the body is optional: {} or none claims for the default 300 s
        body = parse_json(request, raw)
        check("claim", body)
        lease_seconds = int(body.get("lease_seconds", DEFAULT_LEASE_SECONDS))
    result = await review.claim(
        request.app[state.POOL], reviewer, candidate_id, lease_seconds, now(request)
    )
    return json_response(result)


@routes.post("/v1/review/decisions")
async def post_decisions(request: web.Request) -> web.Response:
    reviewer = await _reviewer(request)
    body = await json_body(request, "decisions")
    items = []
    for i, d in enumerate(body["decisions"]):
        ttl = d.get("ttl_seconds")
        if ttl is not None and d["action"] != "approve":
            detail = "ttl_seconds is given only with approve"
            raise ValidationFailed(
                detail, errors=[{"pointer": f"/decisions/{i}/ttl_seconds", "detail": detail}]
            )
        items.append(
            review.DecisionRequest(
                candidate_id=uuid.UUID(d["candidate_id"]),
                action=d["action"],
                reason=d["reason"],
                ttl_seconds=int(ttl) if ttl is not None else None,
            )
        )
    results = await review.decide(request.app[state.POOL], reviewer, items, now(request))
    return json_response({"results": results})
