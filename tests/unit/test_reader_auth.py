"""The reader gate's pure parts, and that a malformed reader key costs no lookup."""

from __future__ import annotations

import base64
import uuid
from typing import Any, NoReturn

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from honeymesh_hub import state
from honeymesh_hub.auth import authenticate_reader, reader_key_of
from honeymesh_hub.callers import NodeCaller, ReaderCaller
from honeymesh_hub.clock import ManualClock
from honeymesh_hub.config import Config
from honeymesh_hub.entitlements import NodeIdentity, TenantState, effective_limits
from honeymesh_hub.errors import Forbidden, Unauthorized
from honeymesh_hub.keydirectory import FailedAuthGuard, ReaderDirectory
from honeymesh_hub.services.feed import scopes_of, scopes_of_reader
from honeymesh_hub.tokens import new_token, well_formed_reader_key

KEY = new_token("reader")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Api-Key", KEY)],
        [("Authorization", f"Bearer {KEY}")],
        [("Authorization", f"Token {KEY}")],
        [("Authorization", f"token {KEY}")],
        [("Authorization", _basic("", KEY))],
        [("Authorization", _basic("bouncer", KEY))],
        [("X-Api-Key", KEY), ("Authorization", _basic("x", KEY))],
    ],
)
def test_each_form_carries_the_key(headers: list[tuple[str, str]]) -> None:
    assert reader_key_of(CIMultiDict(headers)) == KEY


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("X-Api-Key", "")],
        [("X-Api-Key", KEY), ("X-Api-Key", KEY)],
        [("Authorization", f"Bearer {KEY}"), ("Authorization", f"Bearer {KEY}")],
        [("X-Api-Key", KEY), ("Authorization", f"Bearer {KEY}x")],
        [("Authorization", KEY)],
        [("Authorization", f"Basic {KEY}")],
        [("Authorization", "Basic " + base64.b64encode(KEY.encode()).decode())],
        [("Authorization", "Basic " + base64.b64encode(b"u:\xff").decode())],
        [("Authorization", "Basic " + "A" * 2000)],
        [("Authorization", "Basic üü==")],
        [("Authorization", f"Negotiate {KEY}")],
        [("Authorization", "Bearer ")],
    ],
)
def test_no_key_or_an_ambiguous_one(headers: list[tuple[str, str]]) -> None:
    assert reader_key_of(CIMultiDict(headers)) is None


def test_well_formed_reader_keys() -> None:
    assert well_formed_reader_key(KEY) and len(KEY) == 47
    assert not well_formed_reader_key(new_token("admin"))
    assert not well_formed_reader_key(KEY + "A")
    assert not well_formed_reader_key(KEY[:-1] + "=")
    assert not well_formed_reader_key(KEY + "\n")


class _NoPool:
    def acquire(self) -> NoReturn:
        raise AssertionError("a malformed reader key must not reach the database")


def _app() -> web.Application:
    app = web.Application()
    clock = ManualClock()
    app[state.CONFIG] = Config(database_url="postgresql://hub@127.0.0.1:5432/hub")
    app[state.CLOCK] = clock
    app[state.POOL] = _NoPool()
    app[state.AUTH_GUARD] = FailedAuthGuard()
    app[state.READERS] = ReaderDirectory(_NoPool(), 2.0, clock)
    return app


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Api-Key": "hmk_short"},
        {"X-Api-Key": KEY + "x"},
        {"X-Api-Key": "hma_" + KEY[4:]},
        {"Authorization": "Bearer hmk_" + "!" * 43},
        {"Authorization": _basic("u", "hmk_")},
        {"Authorization": "Token " + "x" * 5000},
        {"Authorization": "Basic ünïcode"},
        {"X-Api-Key": "hmk_" + "é" * 43},
    ],
)
@pytest.mark.parametrize("status", [401, 403])
async def test_malformed_keys_are_refused_without_a_query(
    headers: dict[str, str], status: int
) -> None:
    request = make_mocked_request("GET", "/reader", headers=headers, app=_app())
    expected: type[Exception] = Unauthorized if status == 401 else Forbidden
    with pytest.raises(expected) as refused:
        await authenticate_reader(request, refusal_status=status)
    assert refused.value.status == status  # type: ignore[attr-defined]
    assert request[state.READER_REFUSED] is True
    assert not request.get(state.IDENTIFIED)


def _tenant(plan: str) -> TenantState:
    return TenantState(uuid.uuid4(), plan, "active", None, effective_limits(plan, {}))


@pytest.mark.parametrize("plan", ["community", "pro", "enterprise"])
def test_a_reader_sees_exactly_what_a_node_of_its_tenant_sees(plan: str) -> None:
    tenant = _tenant(plan)
    node: Any = NodeIdentity(
        "a" * 64, b"k" * 32, None, None, uuid.uuid4(), "n", False, None, tenant
    )
    reader = ReaderCaller(key_id=uuid.uuid4(), tenant=tenant, name="r")
    assert scopes_of_reader(reader) == scopes_of(NodeCaller(node))
    assert reader.tenant_id == tenant.tenant_id
