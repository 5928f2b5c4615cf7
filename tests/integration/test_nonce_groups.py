"""Nonces spent together (services/groupcommit.NonceGroups): every signed request's
nonce goes into one insert with the others of its process in flight, and each request
still learns exactly whether its own nonce was new (PROTOCOL.md 2 r2)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from honeymesh_hub import state
from honeymesh_hub.services.groupcommit import NonceGroups
from honeymesh_hub.store import nonces as nonce_store
from tests.support import Hub

pytestmark = pytest.mark.asyncio


async def test_a_group_answers_each_nonce_its_own(hub: Hub) -> None:
    pool = hub.client.app[state.POOL]
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        assert await nonce_store.remember(conn, "k1", "spent", now, 600)
        assert await nonce_store.remember(conn, "k1", "old", now - timedelta(seconds=601), 600)
    # The lead goes alone (nothing in flight); the other five wait for it and then go
    # as exactly one group (max_size 5), with no timing involved.
    groups = NonceGroups(pool, 600, max_size=5, max_wait=3600.0)
    uses = [
        ("k1", "lead"),
        ("k1", "a"),
        ("k1", "a"),  # the same nonce twice in one group: new for the first only
        ("k2", "a"),  # another key's nonce of the same text
        ("k1", "spent"),  # a replay
        ("k1", "old"),  # spent before, expired since: new again
    ]
    fresh = await asyncio.gather(*(groups.spend(k, n, now) for k, n in uses))
    assert fresh == [True, True, False, True, False, True]
    async with pool.acquire() as conn:
        assert not await nonce_store.remember(conn, "k1", "a", now, 600)
        assert not await nonce_store.remember(conn, "k2", "a", now, 600)


async def test_two_replicas_racing_on_the_same_nonces_spend_each_once(hub: Hub) -> None:
    """Two processes' groups with the same 40 nonces in opposite orders: each nonce is
    new exactly once, and the groups never deadlock (rows go in key order)."""
    pool = hub.client.app[state.POOL]
    now = datetime.now(UTC)
    nonces = [f"race-{i:02d}" for i in range(40)]
    a = NonceGroups(pool, 600, max_size=20, max_wait=0.05)
    b = NonceGroups(pool, 600, max_size=20, max_wait=0.05)
    results = await asyncio.gather(
        *(a.spend("k", n, now) for n in nonces),
        *(b.spend("k", n, now) for n in reversed(nonces)),
    )
    first, second = results[:40], results[40:][::-1]
    assert all(x != y for x, y in zip(first, second, strict=True))
