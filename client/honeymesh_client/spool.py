"""The spool: every signal waits here, on disk, until the hub acknowledges it.

SQLite in WAL mode with ``synchronous=FULL``: a signal is on disk (fsync'd) before
``publish`` tries the hub, and it leaves only when the hub answers for it:
``accepted`` or ``duplicate`` (the hub has it) remove it; a ``rejected`` that
trying again cannot cure stays, marked ``rejected`` with the hub's code and
sentence, so ``honeymesh-node spool`` shows it instead of it being retried
forever. Everything else (the hub down, 5xx, 429, the node process killed at
any instruction) leaves the signal waiting.

No duplicates after a crash: a signal's envelope, and so its ``id``, is fixed
when it is spooled; sending it again after a crash that lost the hub's answer
makes the hub answer ``duplicate`` ((node, id) is its idempotency key).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ClientError, HubError, HubUnreachable
from .hub import HubClient, RetryPolicy

__all__ = ["FlushReport", "Spool", "SpoolEntry", "flush"]

# A rejection that may pass later: kept waiting, tried again by the next flush.
RETRYABLE_REJECTIONS = frozenset({"rate_limited"})
DEFAULT_BATCH = 100
OWNER_ONLY = 0o600
# SQLite gives these the main file's mode when it creates them; older ones are tightened.
_SIDE_FILES = ("-wal", "-shm", "-journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    envelope TEXT NOT NULL,
    summary TEXT NOT NULL,
    spooled_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at REAL,
    reason TEXT
);
"""


def _owner_only(path: Path) -> None:
    """Create the spool file readable by its owner only, whatever the umask, and
    tighten an existing one and its side files (signals are the node's business)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, OWNER_ONLY)
    try:
        if os.fstat(fd).st_mode & 0o777 != OWNER_ONLY:
            os.fchmod(fd, OWNER_ONLY)
    finally:
        os.close(fd)
    for suffix in _SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            side = Path(f"{path}{suffix}")
            if side.stat().st_mode & 0o777 != OWNER_ONLY:
                side.chmod(OWNER_ONLY)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    id: str
    envelope: dict[str, Any]
    summary: str
    spooled_at: float
    state: str
    attempts: int
    last_attempt_at: float | None
    reason: str | None


class Spool:
    """One SQLite file; safe to share between processes (SQLite locks)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _owner_only(self.path)
        except OSError as exc:
            raise ClientError(f"cannot open the spool {self.path}: {exc.strerror}") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ClientError(f"cannot open the spool {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add(self, items: Iterable[tuple[str, Mapping[str, object], str]]) -> int:
        """Spool ``(signal id, envelope, summary)`` items in one durable commit;
        how many were new (an id already spooled is kept as it was)."""
        now = self._clock()
        rows = [(sid, json.dumps(env, separators=(",", ":")), s, now) for sid, env, s in items]
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO spool (id, envelope, summary, spooled_at) VALUES (?,?,?,?)",
                rows,
            )
            return db.total_changes - before

    def entries(self, state: str | None = None, limit: int | None = None) -> list[SpoolEntry]:
        sql = "SELECT id, envelope, summary, spooled_at, state, attempts, last_attempt_at, reason"
        sql += " FROM spool"
        args: list[object] = []
        if state is not None:
            sql += " WHERE state = ?"
            args.append(state)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [
            SpoolEntry(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5], r[6], r[7])
            for r in self._db.execute(sql, args)
        ]

    def depth(self) -> tuple[int, int]:
        """(waiting, rejected)."""
        counts = dict(self._db.execute("SELECT state, count(*) FROM spool GROUP BY state"))
        return int(counts.get("waiting", 0)), int(counts.get("rejected", 0))

    def acknowledge(self, ids: Iterable[str]) -> None:
        """The hub has these: forget them."""
        with self._transaction() as db:
            db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

    def reject(self, signal_id: str, reason: str) -> None:
        """The hub refused this for good: keep it, visibly, and stop sending it."""
        with self._transaction() as db:
            db.execute(
                "UPDATE spool SET state = 'rejected', reason = ?, attempts = attempts + 1,"
                " last_attempt_at = ? WHERE id = ?",
                (reason, self._clock(), signal_id),
            )

    def note_attempt(self, ids: Iterable[str], reason: str) -> None:
        """A try that did not settle these; they keep waiting."""
        now = self._clock()
        with self._transaction() as db:
            db.executemany(
                "UPDATE spool SET attempts = attempts + 1, last_attempt_at = ?, reason = ?"
                " WHERE id = ? AND state = 'waiting'",
                [(now, reason, i) for i in ids],
            )

    def drop_rejected(self) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM spool WHERE state = 'rejected'").rowcount


@dataclass(slots=True)
class FlushReport:
    """What a flush settled, per signal id, and why it stopped early, if it did."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopped: str | None = None  # a sentence: why signals still wait
    retry_after: float | None = None
    transient: bool = False  # whether the stop is one time cures (hub down, busy, limited)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results.values() if r.get("status") == status)


async def flush(
    spool: Spool,
    client: HubClient,
    *,
    batch: int = DEFAULT_BATCH,
    retry: RetryPolicy | None = None,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> FlushReport:
    """Send every waiting signal, oldest first, in batches; settle each by its result.

    Stops at the first failure of a whole request (the hub down, 429, 5xx, an
    authentication or entitlement refusal), leaving the rest waiting with the
    reason noted. The batch follows the hub's ``RateLimit`` remaining, so a
    node with a small quota sends what it may rather than being refused whole.
    """
    report = FlushReport()
    size = max(1, batch)
    # Rejected-but-retryable results keep their rows waiting: skip them this round.
    tried: set[str] = set()
    while True:
        pending = [e for e in spool.entries("waiting") if e.id not in tried][:size]
        if not pending:
            return report
        ids = [e.id for e in pending]
        try:
            reply = await client.publish([e.envelope for e in pending], retry=retry)
        except HubUnreachable as exc:
            spool.note_attempt(ids, "hub unreachable")
            report.stopped = str(exc)
            report.transient = True
            return report
        except HubError as exc:
            if exc.status == 422 and exc.code == "validation_failed" and size > 1:
                size = max(1, size // 2)  # a batch over the tenant's max_batch
                continue
            reason = f"{exc.code} ({exc.status})"
            spool.note_attempt(ids, reason)
            report.stopped = str(exc)
            report.retry_after = exc.retry_after
            report.transient = exc.transient
            return report
        results = reply.body.get("results") if isinstance(reply.body, dict) else None
        if not isinstance(results, list) or len(results) != len(pending):
            spool.note_attempt(ids, "unreadable answer")
            report.stopped = "the hub's answer to a publish was not one result per signal"
            return report
        done: list[str] = []
        for entry, result in zip(pending, results, strict=True):
            status = result.get("status") if isinstance(result, dict) else None
            report.results[entry.id] = result
            if status in ("accepted", "duplicate"):
                done.append(entry.id)
            elif status == "rejected":
                error = result.get("error") or {}
                code = str(error.get("code", "rejected"))
                detail = str(error.get("detail", "")).strip()
                reason = f"{code}: {detail}" if detail else code
                if code in RETRYABLE_REJECTIONS:
                    spool.note_attempt([entry.id], reason)
                    tried.add(entry.id)
                else:
                    spool.reject(entry.id, reason)
            else:
                spool.note_attempt([entry.id], "no status in the hub's answer")
                tried.add(entry.id)
            if on_result is not None:
                on_result(entry.id, result)
        spool.acknowledge(done)
        remaining = reply.rate_remaining
        if remaining is not None:
            size = max(1, min(batch, remaining))
