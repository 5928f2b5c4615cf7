"""The sequencer (services/sequencer.py): feed events get `ord` and `date_added` in
the feed's order, `date_added` strictly increasing, and an event whose transaction
began first but committed last is sequenced after nothing it precedes: it waits, and
then takes its place before the later ones, with a later `date_added` than any row
already sequenced."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from honeymesh_client.protocol.tlogleaf import leaf_bytes, log_of_scope
from honeymesh_hub import state
from honeymesh_hub.services import sequencer
from honeymesh_hub.store.db import connect, migrate
from tests.support import Hub, approve, sequenced, trusted

pytestmark = pytest.mark.asyncio


async def _rows(hub: Hub) -> list[Any]:
    conn = await connect(hub.database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT ord, date_added, xid::text AS xid, seq, candidate_id, kind, time,"
                " created, latest FROM sequenced ORDER BY ord"
            )
        )
    finally:
        await conn.close()


async def test_events_take_the_feed_order_and_increasing_dates(hub: Hub) -> None:
    node = await trusted(hub)
    ids = [await approve(node, f"203.0.113.{i}") for i in range(1, 6)]
    await sequenced(hub)
    rows = await _rows(hub)
    assert [str(r["candidate_id"]) for r in rows] == ids
    assert [r["ord"] for r in rows] == [1, 2, 3, 4, 5]
    order = [(int(r["xid"]), r["seq"]) for r in rows]
    assert order == sorted(order)
    dates = [r["date_added"] for r in rows]
    assert all(a < b for a, b in itertools.pairwise(dates))
    assert all(r["latest"] and r["created"] == r["time"] for r in rows)


async def test_a_late_committer_waits_then_comes_before_what_began_after_it(hub: Hub) -> None:
    node = await trusted(hub)
    first = await approve(node, "198.51.100.1")
    await sequenced(hub)
    [before] = await _rows(hub)
    late = await connect(hub.database_url)
    try:
        tx = late.transaction()
        await tx.start()
        # This transaction's id is older than every approval below.
        await late.fetchval("SELECT pg_current_xact_id()")
        later = [await approve(node, f"198.51.100.{i}") for i in (2, 3)]
        done, more = await sequencer.run_round(
            hub.client.app[state.POOL], hub.client.app[state.LOG_KEY]
        )
        assert done == 0 and more  # everything after it waits behind it
        assert len(await _rows(hub)) == 1
        # It writes an event (a retraction-like re-add of the first decision) and ends.
        await late.execute(
            "INSERT INTO feed_log (candidate_id, kind, reason, scope_key, entry, time)"
            " SELECT candidate_id, 'removed', 'retracted', scope_key, entry, time"
            " FROM feed_log WHERE candidate_id = $1::uuid",
            first,
        )
        await tx.commit()
    finally:
        await late.close()
    await sequenced(hub)
    rows = await _rows(hub)
    assert [str(r["candidate_id"]) for r in rows] == [first, first, *later]
    assert rows[1]["kind"] == "removed" and rows[1]["date_added"] > before["date_added"]
    assert [r["latest"] for r in rows] == [False, True, True, True]
    assert rows[1]["time"] > rows[0]["time"] and rows[1]["created"] == rows[0]["created"]
    dates = [r["date_added"] for r in rows]
    assert all(a < b for a, b in itertools.pairwise(dates))


async def test_a_round_that_dies_leaves_nothing_and_the_next_one_redoes_it(hub: Hub) -> None:
    node = await trusted(hub)
    await approve(node, "192.0.2.10")
    pool = hub.client.app[state.POOL]
    # The state row is claimed; the claimer fails before it commits.
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchrow("SELECT ord FROM sequencer_state WHERE id = 1 FOR UPDATE")
            assert claimed is not None
            await conn.execute("UPDATE sequencer_state SET ord = ord + 100 WHERE id = 1")
            raise RuntimeError("the replica dies mid-append")
    await sequenced(hub)
    rows = await _rows(hub)
    assert [r["ord"] for r in rows] == [1]


async def test_migration_0013_gives_rows_logged_before_it_their_served_events(hub: Hub) -> None:
    """Rows sequenced and logged before migration 0013 get the served text the
    sequencer makes now (the feed and snapshots read it instead of the leaf)."""
    node = await trusted(hub)
    first = await approve(node, "198.51.100.1")
    await approve(node, "198.51.100.2")
    reply = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "198.51.100.1", "reason": "x"})
    assert reply.status == 201
    await sequenced(hub)
    conn = await connect(hub.database_url)
    try:
        made = {
            r["ord"]: json.loads(r["event"])
            for r in await conn.fetch("SELECT ord, event FROM sequenced")
        }
        assert len(made) == 3 and made[3]["id"] == first and made[3]["reason"] == "retracted"
        await conn.execute("ALTER TABLE sequenced DROP COLUMN event")
        await conn.execute("DELETE FROM schema_migrations WHERE version = '0013_served_events'")
        assert await migrate(hub.database_url) == ["0013_served_events"]
        rows = await conn.fetch("SELECT ord, leaf, event, scope_key, log_index FROM sequenced")
    finally:
        await conn.close()
    for row in rows:
        event = json.loads(row["event"])
        assert event == made[row["ord"]]
        leaf = {k: v for k, v in event.items() if k != "leaf"}
        assert leaf_bytes(leaf, json.loads(bytes(row["leaf"]))["event"]) == bytes(row["leaf"])
        assert event["leaf"] == {"log": log_of_scope(row["scope_key"]), "index": row["log_index"]}
