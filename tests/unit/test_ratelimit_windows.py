"""The admit script decides; the windows Python reports must agree with it, and a
refusal is always a 429 (PROTOCOL.md section 9), however the two round."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given
from hypothesis import strategies as st

from honeymesh_hub import state
from honeymesh_hub.admission import VerifiedRequest, admit
from honeymesh_hub.errors import RateLimited
from honeymesh_hub.metrics import Metrics
from honeymesh_hub.ratelimit import Admission, Limit, _window, per_minute


def _lua_refuses(amount: int, expiry: int, cost: int, pc: int, pt: int, cc: int) -> bool:
    """_ADMIT_LUA's test, in the same (double) arithmetic as Lua."""
    return cost > amount or math.floor(pc * pt / (expiry * 1000)) + cc + cost > amount


@given(
    amount=st.integers(1, 10_000),
    cost=st.integers(1, 100),
    pc=st.integers(0, 10_000),
    pt=st.integers(0, 120_000),
    cc=st.integers(0, 10_000),
)
@example(amount=20, cost=2, pc=100, pt=10_200, cc=2)
def test_reported_window_agrees_with_the_script(
    amount: int, cost: int, pc: int, pt: int, cc: int
) -> None:
    limit = Limit(per_minute(amount), "n")
    window = _window(limit, pc, pt, cc, 60_000)
    refused = cost > amount or window.remaining < cost
    assert refused == _lua_refuses(amount, 60, cost, pc, pt, cc)


class _Limiter:
    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    async def admit(self, *_: Any) -> Admission:
        return self.admission


class _FreshNonces:
    """Nonces that are always new (admission spends them through state.NONCES)."""

    async def spend(self, *_: Any) -> bool:
        return True


async def test_a_refusal_is_a_429_even_if_the_windows_look_open() -> None:
    """An admission refused by the script whose windows seem to have room left (the
    rounding gap) answers 429 for the refused policy, never a 500."""
    limit = Limit(per_minute(20), "node")
    looks_open = SimpleNamespace(limit=limit, remaining=5, reset=3)
    app = web.Application()
    app[state.LIMITER] = _Limiter(Admission(False, (looks_open,)))  # type: ignore[arg-type]
    app[state.REDIS] = SimpleNamespace(last_failure=-math.inf)  # type: ignore[assignment]
    app[state.NONCES] = _FreshNonces()  # type: ignore[assignment]
    app[state.METRICS] = Metrics()
    request = make_mocked_request("GET", "/v1/feed", app=app)
    verified = VerifiedRequest(SimpleNamespace(keyid="a" * 64), "n" * 16, 0.0)  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as refused:
        await admit(request, verified, [("pull", limit, 2)])
    assert refused.value.headers["RateLimit-Policy"] == '"pull";q=20;w=60'
