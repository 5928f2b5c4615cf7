"""Feed state: pages applied as PROTOCOL.md section 8 says, saved atomically,
resumed from the cursor, restarted from a snapshot after 410; each page checked
against a transparency log first (the fake hub keeps a real one)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import pytest

from honeymesh_client.errors import HubError
from honeymesh_client.feedstate import FeedState, atomic_write, sync
from honeymesh_client.hub import HubClient
from honeymesh_client.protocol import merkle
from honeymesh_client.protocol.tlogleaf import leaf_bytes
from honeymesh_hub.tlog import LogKey

KEY = LogKey.from_seed("hub.test", b"\x01" * 32)


class FakeLog:
    """The fake hub's mesh log: scripted pages get their leaves and checkpoints here,
    a snapshot's pages all the checkpoint at its end."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []

    def checkpoint(self) -> str:
        return KEY.checkpoint("mesh", len(self.hashes), merkle.root(self.hashes))

    def stamp(self, script: list[dict[str, Any] | Exception]) -> None:
        group: list[dict[str, Any]] = []
        for item in script:
            if isinstance(item, Exception):
                continue
            for kind in ("added", "removed"):
                stamped = []
                for event in item[kind]:
                    event = {**event, "time": "2026-12-07T00:00:00.000000Z"}
                    event["leaf"] = {"log": "mesh", "index": len(self.hashes)}
                    self.hashes.append(merkle.leaf_hash(leaf_bytes(event, kind)))
                    stamped.append(event)
                item[kind] = stamped
            if item["reset"] or group:
                group.append(item)
                if not item["more"]:
                    for member in group:
                        member["checkpoints"] = {"mesh": self.checkpoint()}
                    group = []
            else:
                item["checkpoints"] = (
                    {"mesh": self.checkpoint()} if item["added"] or item["removed"] else {}
                )

    def stored(self, size: int) -> dict[merkle.Node, bytes]:
        nodes: dict[merkle.Node, bytes] = {}
        level = 0
        while (1 << level) <= size:
            for index in range(size >> level):
                nodes[(level, index)] = merkle.root(
                    self.hashes[index << level : (index + 1) << level]
                )
            level += 1
        return nodes


def entry(n: int, expires: str = "2999-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "id": f"id-{n}",
        "indicator": {"type": "ip", "value": f"203.0.113.{n}"},
        "scope": "mesh",
        "expires_at": expires,
    }


def page(
    cursor: str,
    added: list[dict[str, Any]] = (),  # type: ignore[assignment]
    removed: list[int] = (),  # type: ignore[assignment]
    *,
    more: bool = False,
    reset: bool = False,
) -> dict[str, Any]:
    return {
        "cursor": cursor,
        "more": more,
        "reset": reset,
        "added": list(added),
        "removed": [{"id": f"id-{n}", "reason": "retracted"} for n in removed],
    }


class FakeFeed:
    """Serves scripted pages; an exception in the script is raised instead."""

    def __init__(
        self, script: list[dict[str, Any] | Exception], log: FakeLog | None = None
    ) -> None:
        self.log = log or FakeLog()
        self.log.stamp(script)
        self.script = script
        self.cursors: list[str | None] = []

    async def transparency_logs(self) -> list[dict[str, Any]]:
        return [{"log": "mesh", "verifier_key": KEY.verifier_key}]

    async def log_frontier(self, log: str, size: int) -> list[bytes]:
        stored = self.log.stored(size)
        return [stored[node] for node in merkle.frontier(size)]

    async def log_consistency(self, log: str, first: int, second: int) -> list[bytes]:
        return merkle.consistency_proof(first, second, self.log.stored(second))

    async def feed(self, cursor: str | None, *, limit: int = 1000, wait: int = 0) -> dict[str, Any]:
        self.cursors.append(cursor)
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def test_apply_snapshot_then_deltas() -> None:
    state = FeedState(active={"id-9": entry(9)})
    assert state.apply(page("c1", [entry(1), entry(2)], reset=True, more=True), 0.0)
    assert set(state.active) == {"id-1", "id-2"}
    state.apply(page("c2", [entry(3)]), 0.0)
    assert state.apply(page("c3", [dict(entry(1), expires_at="2999-02-01T00:00:00Z")], [2]), 0.0)
    assert set(state.active) == {"id-1", "id-3"}
    assert state.active["id-1"]["expires_at"].startswith("2999-02")
    assert not state.apply(page("c4"), 1.0)
    assert state.cursor == "c4" and state.synced_at == 1.0


def test_a_reset_page_that_changes_nothing_is_no_change() -> None:
    state = FeedState(active={"id-1": entry(1)})
    assert not state.apply(page("c", [entry(1)], reset=True), 0.0)


def test_current_leaves_out_expired() -> None:
    state = FeedState(active={"id-1": entry(1), "id-2": entry(2, "2000-01-01T00:00:00Z")})
    assert [e["id"] for e in state.current(1e9)] == ["id-1"]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    state = FeedState()
    state.apply(page("cur", [entry(1), entry(2)], reset=True), 5.0)
    state.save(path)
    again = FeedState.load(path)
    assert again == state
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["feed.json"]  # no temp file left


@pytest.mark.parametrize("content", [b"", b"{", b'{"version": 99}', b"[]"])
def test_unreadable_state_is_a_fresh_start(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "feed.json"
    path.write_bytes(content)
    assert FeedState.load(path) == FeedState()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    atomic_write(path, b"old\n")
    with pytest.raises(TypeError):
        atomic_write(path, cast(bytes, None))
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


async def test_sync_follows_pages_and_resumes_from_the_saved_cursor(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    fake = FakeFeed([page("s1", [entry(1)], reset=True, more=True), page("d1", [entry(2)])])
    state = FeedState()
    result = await sync(cast(HubClient, fake), state, path, clock=lambda: 1.0)
    assert result.changed and result.pages == 2 and fake.cursors == [None, "s1"]
    assert state.log_key == KEY.verifier_key and state.ranges["mesh"].size == 2
    # A restart: the saved state, then a delta from its cursor.
    restarted = FeedState.load(path)
    assert restarted.ranges["mesh"].size == 2
    fake = FakeFeed([page("d2", [entry(3)], [1])], fake.log)
    result = await sync(cast(HubClient, fake), restarted, path, clock=lambda: 2.0)
    assert fake.cursors == ["d1"]
    assert set(FeedState.load(path).active) == {"id-2", "id-3"}
    assert FeedState.load(path).ranges["mesh"].size == 4


async def test_a_page_that_does_not_match_the_log_changes_nothing(tmp_path: Path) -> None:
    from honeymesh_client.logcheck import LogMismatch

    path = tmp_path / "feed.json"
    fake = FakeFeed([page("s1", [entry(1)], reset=True), page("d1", [entry(2)])])
    fake.script[1]["added"][0]["scope"] = "tenant"  # altered after it was logged
    state = FeedState()
    await sync(cast(HubClient, fake), state, path)
    with pytest.raises(LogMismatch, match="does not match at size 2"):
        await sync(cast(HubClient, fake), state, path)
    saved = FeedState.load(path)
    assert saved.cursor == "s1" and set(saved.active) == {"id-1"}
    assert saved.ranges["mesh"].size == 1


async def test_410_starts_again_from_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    state = FeedState(cursor="old", active={"id-1": entry(1), "id-7": entry(7)})
    fake = FakeFeed(
        [
            HubError(410, "cursor_expired", "compacted"),
            page("s1", [entry(1), entry(2)], reset=True),
        ]
    )
    state.log_key = KEY.verifier_key
    result = await sync(cast(HubClient, fake), state, path)
    assert fake.cursors == ["old", None]
    assert result.restarted and "no longer has" in result.restarted
    assert set(state.active) == {"id-1", "id-2"}
    assert json.loads(path.read_text())["cursor"] == "s1"


async def test_a_second_410_in_one_sync_is_an_error(tmp_path: Path) -> None:
    fake = FakeFeed([HubError(410, "cursor_expired", "x"), HubError(410, "cursor_expired", "x")])
    with pytest.raises(HubError):
        await sync(cast(HubClient, fake), FeedState(cursor="old"), tmp_path / "f.json")


async def test_other_errors_leave_the_saved_state_alone(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    state = FeedState(cursor="c", active={"id-1": entry(1)})
    state.save(path)
    fake = FakeFeed([HubError(503, "service_unavailable", "x")])
    with pytest.raises(HubError):
        await sync(cast(HubClient, fake), state, path)
    assert FeedState.load(path).cursor == "c"
