"""The spool: durable until acknowledged, rejections kept visible, no duplicates.

The hub here is a fake at the HubClient boundary (its `publish`), a stand-in for
network failures and answers; the real hub is exercised in tests/e2e.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from honeymesh_client.errors import HubError, HubUnreachable, RateLimited
from honeymesh_client.hub import HubClient, Response, RetryPolicy
from honeymesh_client.spool import Spool, flush

Answer = Callable[[str], dict[str, Any]]


class FakeHub:
    """Keeps what it 'committed'; answers per signal id, or fails whole requests."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.batches: list[int] = []
        self.fail: Exception | None = None
        self.lose_answer = False  # commit, then fail as if the connection dropped
        self.reject: dict[str, str] = {}
        self.remaining: int | None = None

    async def publish(
        self, envelopes: Sequence[Mapping[str, object]], retry: RetryPolicy | None = None
    ) -> Response:
        self.batches.append(len(envelopes))
        if self.fail is not None:
            raise self.fail
        results = []
        for env in envelopes:
            sid = str(env["id"])
            if sid in self.reject:
                results.append(
                    {"id": sid, "status": "rejected", "error": {"code": self.reject[sid]}}
                )
            elif sid in self.stored:
                results.append({"id": sid, "status": "duplicate"})
            else:
                self.stored.append(sid)
                results.append({"id": sid, "status": "accepted"})
        if self.lose_answer:
            self.lose_answer = False
            raise HubUnreachable("cannot reach the hub (connection reset)")
        headers = {}
        if self.remaining is not None:
            headers["RateLimit"] = f'"publish";r={self.remaining};t=30'
        return Response(202, headers, {"results": results})


def client(hub: FakeHub) -> HubClient:
    return cast(HubClient, hub)


def items(n: int) -> list[tuple[str, dict[str, object], str]]:
    # The fake reads the id from the "envelope"; the spool stores it verbatim.
    out: list[tuple[str, dict[str, object], str]] = []
    for _ in range(n):
        sid = str(uuid.uuid4())
        out.append((sid, {"id": sid, "payload": "x"}, f"203.0.113.1 test/{sid[:4]} (mesh)"))
    return out


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool.sqlite")


def test_wal_and_full_sync(spool: Spool) -> None:
    db = sqlite3.connect(spool.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: the spool's own says FULL (2).
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_spool_files_are_owner_only_even_under_umask_000(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    old = os.umask(0)
    try:
        spool = Spool(path)
        spool.add(items(2))
        side = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
        present = [p for p in side if p.exists()]
        assert Path(f"{path}-wal") in present  # WAL mode: a side file to check
        assert {str(p): _mode(p) for p in [path, *present]} == {
            str(p): 0o600 for p in [path, *present]
        }
        spool.close()
    finally:
        os.umask(old)


def test_an_existing_loose_spool_is_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    Spool(path).close()
    for p in [path, *tmp_path.glob("spool.sqlite-*")]:
        p.chmod(0o644)
    Spool(path).close()
    assert all(_mode(p) == 0o600 for p in [path, *tmp_path.glob("spool.sqlite-*")])
    assert _mode(path) == 0o600


def test_add_is_idempotent_and_survives_reopen(spool: Spool, tmp_path: Path) -> None:
    batch = items(3)
    assert spool.add(batch) == 3
    assert spool.add(batch[:1]) == 0
    spool.close()
    again = Spool(tmp_path / "spool.sqlite")
    assert [e.id for e in again.entries()] == [b[0] for b in batch]
    assert again.depth() == (3, 0)


async def test_flush_settles_each_signal_by_its_result(spool: Spool) -> None:
    hub = FakeHub()
    batch = items(4)
    spool.add(batch)
    hub.stored.append(batch[1][0])  # the hub has it already: duplicate
    hub.reject[batch[2][0]] = "reserved_range"
    hub.reject[batch[3][0]] = "rate_limited"  # past new_candidates_per_day: try later
    report = await flush(spool, client(hub))
    assert [report.results[b[0]]["status"] for b in batch] == [
        "accepted",
        "duplicate",
        "rejected",
        "rejected",
    ]
    left = {e.id: e for e in spool.entries()}
    assert set(left) == {batch[2][0], batch[3][0]}
    assert left[batch[2][0]].state == "rejected" and left[batch[2][0]].reason == "reserved_range"
    assert left[batch[3][0]].state == "waiting" and left[batch[3][0]].reason == "rate_limited"
    # A rejected-for-good signal is never sent again; a rate-limited one is.
    hub.reject.pop(batch[3][0])
    await flush(spool, client(hub))
    assert spool.depth() == (0, 1)
    assert hub.stored.count(batch[2][0]) == 0


@pytest.mark.parametrize(
    "failure",
    [
        HubUnreachable("cannot reach the hub at http://x (connection refused)"),
        HubError(503, "service_unavailable", "database down", retry_after=5),
        RateLimited(429, "rate_limited", "slow down", retry_after=60),
        HubError(500, "internal", "boom"),
    ],
    ids=["down", "503", "429", "500"],
)
async def test_whole_request_failures_lose_nothing(spool: Spool, failure: Exception) -> None:
    hub = FakeHub()
    hub.fail = failure
    spool.add(items(5))
    report = await flush(spool, client(hub))
    assert report.stopped
    assert spool.depth() == (5, 0)
    assert all(e.attempts == 1 for e in spool.entries())
    hub.fail = None
    await flush(spool, client(hub))
    assert spool.depth() == (0, 0) and len(hub.stored) == 5


@pytest.mark.parametrize(
    ("failure", "transient"),
    [
        (HubUnreachable("cannot reach the hub at http://x (connection refused)"), True),
        (HubError(503, "service_unavailable", "database down"), True),
        (RateLimited(429, "rate_limited", "slow down", retry_after=60), True),
        (HubError(403, "forbidden", "the node is disabled (429 mentioned in passing)"), False),
        (HubError(500, "internal", "boom"), False),
    ],
    ids=["down", "503", "429", "403", "500"],
)
async def test_a_stop_is_transient_by_the_error_not_its_wording(
    spool: Spool, failure: Exception, transient: bool
) -> None:
    """publish exits 0 (spooled) only for what time cures; the report says which."""
    hub = FakeHub()
    hub.fail = failure
    spool.add(items(2))
    report = await flush(spool, client(hub))
    assert report.stopped and report.transient is transient


async def test_a_lost_answer_is_resent_and_answered_duplicate(spool: Spool) -> None:
    hub = FakeHub()
    spool.add(items(6))
    hub.lose_answer = True
    report = await flush(spool, client(hub), batch=4)
    assert report.stopped and spool.depth() == (6, 0)
    report = await flush(spool, client(hub), batch=4)
    assert report.count("duplicate") == 4 and report.count("accepted") == 2
    assert spool.depth() == (0, 0)
    assert len(hub.stored) == len(set(hub.stored)) == 6


async def test_batches_follow_the_rate_limit_remaining(spool: Spool) -> None:
    hub = FakeHub()
    hub.remaining = 2
    spool.add(items(7))
    await flush(spool, client(hub), batch=5)
    assert hub.batches == [5, 2]


async def test_drop_rejected(spool: Spool) -> None:
    hub = FakeHub()
    batch = items(2)
    spool.add(batch)
    hub.reject[batch[0][0]] = "validation_failed"
    await flush(spool, client(hub))
    assert spool.drop_rejected() == 1
    assert spool.depth() == (0, 0)
