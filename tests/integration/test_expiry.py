"""Expiry (PROTOCOL.md section 7): approved decisions whose `expires_at` passed become
`expired`, leave the feed with reason `expired`, and are audited by `rule:expiry`.

`sweep` is driven directly with the test's ManualClock; no test sleeps. The app's own
background sweeper may run during a test too, so outcomes are asserted on the
database (one expiry per candidate, whoever swept), not on which sweep did it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import asyncpg

from honeymesh_hub import state
from honeymesh_hub.clock import to_datetime
from honeymesh_hub.metrics import Metrics
from honeymesh_hub.services.expiry import sweep
from tests.integration.foundation import tenant_decisions
from tests.support import Hub, Node, publish, signal


async def _rows(hub: Hub, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(hub.database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _approved(hub: Hub, node: Node, token: str, value: str, ttl: int) -> str:
    reply = await publish(node, signal(node, value))
    cid = str(reply.body["results"][0]["candidate_id"])
    decided = await hub.call(
        "POST",
        "/v1/review/decisions",
        {
            "decisions": [
                {"candidate_id": cid, "action": "approve", "reason": "r", "ttl_seconds": ttl}
            ]
        },
        token=token,
    )
    assert decided.body["results"][0]["state"] == "approved", decided.body
    return cid


async def _sweep(hub: Hub, **kwargs: Any) -> int:
    return await sweep(hub.client.app[state.POOL], to_datetime(hub.now()), **kwargs)


async def _states(hub: Hub) -> dict[str, str]:
    rows = await _rows(hub, "SELECT id, state FROM candidates")
    return {str(r["id"]): r["state"] for r in rows}


async def test_expiry_by_the_clock(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    short = await _approved(hub, node, rev, "203.0.113.1", 300)
    long = await _approved(hub, node, rev, "203.0.113.2", 900)
    hub.clock.advance(299)
    await _sweep(hub)
    assert await _states(hub) == {short: "approved", long: "approved"}
    hub.clock.advance(1)
    await _sweep(hub)
    assert await _states(hub) == {short: "expired", long: "approved"}
    feed = await _rows(hub, "SELECT candidate_id, kind, reason, entry FROM feed_log ORDER BY seq")
    assert [(str(r["candidate_id"]), r["kind"], r["reason"]) for r in feed] == [
        (short, "added", None),
        (long, "added", None),
        (short, "removed", "expired"),
    ]
    removed = json.loads(feed[-1]["entry"])
    assert removed["id"] == short
    assert removed["indicator"] == {"type": "ip", "value": "203.0.113.1"}
    audit = await _rows(
        hub,
        "SELECT actor, action, target, details FROM audit_log WHERE action = 'candidate.expire'",
    )
    assert [(r["actor"], r["target"]) for r in audit] == [("rule:expiry", f"candidate:{short}")]
    details = json.loads(audit[0]["details"])
    assert (details["from"], details["to"]) == ("approved", "expired")
    [decision] = await _rows(
        hub, "SELECT actor, from_state, to_state FROM decisions WHERE action = 'expire'"
    )
    assert tuple(decision) == ("rule:expiry", "approved", "expired")


async def test_sweep_is_idempotent(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    cid = await _approved(hub, node, rev, "203.0.113.5", 300)
    hub.clock.advance(3600)
    await _sweep(hub)
    assert await _sweep(hub) == 0
    assert await _sweep(hub, wait=False) == 0
    assert await _states(hub) == {cid: "expired"}
    expires = await _rows(hub, "SELECT 1 FROM audit_log WHERE action = 'candidate.expire'")
    removed = await _rows(hub, "SELECT 1 FROM feed_log WHERE kind = 'removed'")
    assert (len(expires), len(removed)) == (1, 1)


async def test_concurrent_sweeps_expire_each_candidate_once(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    made = [await _approved(hub, node, rev, f"198.51.100.{i}", 300) for i in range(1, 13)]
    hub.clock.advance(300)
    counts = await asyncio.gather(
        _sweep(hub, batch=5),
        _sweep(hub, batch=5),
        _sweep(hub, batch=5, wait=False),
        _sweep(hub, batch=5, wait=False),
    )
    assert sum(counts) <= len(made)  # the app's own sweeper may have taken some
    assert set((await _states(hub)).values()) == {"expired"}
    audit = await _rows(
        hub,
        "SELECT target, count(*) AS n FROM audit_log WHERE action = 'candidate.expire'"
        " GROUP BY target",
    )
    assert sorted(r["target"] for r in audit) == sorted(f"candidate:{c}" for c in made)
    assert {r["n"] for r in audit} == {1}


async def test_batches_cover_every_due_candidate(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    made = [await _approved(hub, node, rev, f"203.0.113.{i}", 290 + i) for i in range(10, 17)]
    hub.clock.advance(303)  # .10 to .13 are due
    await _sweep(hub, batch=2)
    states = await _states(hub)
    assert [states[c] for c in made] == ["expired"] * 4 + ["approved"] * 3


async def test_lag_metric_is_the_age_of_the_oldest_overdue_expiry(hub: Hub) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    await _approved(hub, node, rev, "203.0.113.30", 300)
    await _approved(hub, node, rev, "203.0.113.31", 600)
    metrics = Metrics()
    hub.clock.advance(100)
    await _sweep(hub, metrics=metrics)
    assert metrics.registry.get_sample_value("honeymesh_expiry_sweeper_lag_seconds") == 0.0
    hub.clock.advance(700)  # the first has been due for 500 s, the second for 200 s
    await _sweep(hub, metrics=metrics)
    lag = metrics.registry.get_sample_value("honeymesh_expiry_sweeper_lag_seconds")
    assert lag is not None and abs(lag - 500) < 0.01


async def test_a_new_signal_reopens_an_expired_candidate_and_a_reviewer_may_approve(
    hub: Hub,
) -> None:
    node = await hub.enroll()
    rev = await hub.reviewer_token()
    cid = await _approved(hub, node, rev, "203.0.113.40", 300)
    hub.clock.advance(300)
    await _sweep(hub)
    reply = await publish(node, signal(node, "203.0.113.40"))
    assert reply.body["results"][0]["candidate_state"] == "pending"
    decided = await hub.call(
        "POST",
        "/v1/review/decisions",
        {"decisions": [{"candidate_id": cid, "action": "approve", "reason": "again"}]},
        token=rev,
    )
    assert decided.body["results"][0]["state"] == "approved"
    [row] = await _rows(hub, "SELECT expires_at FROM candidates")
    assert row["expires_at"] == to_datetime(hub.now()) + timedelta(seconds=3600)
    feed = await _rows(hub, "SELECT kind, reason FROM feed_log ORDER BY seq")
    assert [(r["kind"], r["reason"]) for r in feed] == [
        ("added", None),
        ("removed", "expired"),
        ("added", None),
    ]


async def test_the_app_runs_a_background_sweeper(hub: Hub) -> None:
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "expiry-sweeper"]
    assert len(tasks) == 1
    assert not tasks[0].done()


async def _caught_up(node: Node) -> str:
    """Follow the feed's snapshot to its end; the delta cursor after it."""
    cursor = ""
    while True:
        query = "?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        reply = await node.request("GET", "/v1/feed" + query)
        assert reply.status == 200, reply.body
        cursor = reply.body["cursor"]
        if not reply.body["more"]:
            return cursor


async def test_a_sweep_across_300_tenants_expires_all_and_wakes_their_waiters(hub: Hub) -> None:
    # One NOTIFY naming 300 tenant scopes would pass PostgreSQL's 8000-byte payload limit.
    now = to_datetime(hub.now())
    tenants = await tenant_decisions(
        hub.database_url, 300, "203.0.113.77", now, now + timedelta(seconds=300)
    )
    reader = await hub.enroll(tenants[123])
    cursor = await _caught_up(reader)
    waiting = asyncio.create_task(reader.request("GET", f"/v1/feed?wait=30&cursor={cursor}"))
    await asyncio.wait_for(hub.client.app[state.NOTIFIER].until_waiting(1), 10)
    hub.clock.advance(300)
    await _sweep(hub)
    reply = await asyncio.wait_for(waiting, 1.0)  # PROTOCOL.md 8: woken within 1 s
    assert [r["reason"] for r in reply.body["removed"]] == ["expired"]
    rows = await _rows(hub, "SELECT state, count(*) AS n FROM candidates GROUP BY state")
    assert {r["state"]: r["n"] for r in rows} == {"expired": 300}
