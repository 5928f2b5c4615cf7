"""Feed state: pages applied as PROTOCOL.md section 8 says, saved atomically,
resumed from the cursor, restarted from a snapshot after 410."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import pytest

from honeymesh_client.errors import HubError
from honeymesh_client.feedstate import FeedState, atomic_write, sync
from honeymesh_client.hub import HubClient


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

    def __init__(self, script: list[dict[str, Any] | Exception]) -> None:
        self.script = script
        self.cursors: list[str | None] = []

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
    # A restart: the saved state, then a delta from its cursor.
    restarted = FeedState.load(path)
    fake = FakeFeed([page("d2", [entry(3)], [1])])
    result = await sync(cast(HubClient, fake), restarted, path, clock=lambda: 2.0)
    assert fake.cursors == ["d1"]
    assert set(FeedState.load(path).active) == {"id-2", "id-3"}


async def test_410_starts_again_from_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    state = FeedState(cursor="old", active={"id-1": entry(1), "id-7": entry(7)})
    fake = FakeFeed(
        [
            HubError(410, "cursor_expired", "compacted"),
            page("s1", [entry(1), entry(2)], reset=True),
        ]
    )
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
