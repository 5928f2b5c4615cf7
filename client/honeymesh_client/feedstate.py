"""The node's copy of the feed (PROTOCOL.md section 8): a cursor and the active set.

Saved after every page, atomically (a temporary file in the same directory,
fsync, rename, fsync of the directory), so a node killed at any point restarts
with either the old state or the new one, never a mix, and resumes with a delta
from its cursor. A ``410 cursor_expired`` (the hub compacted its log) or a cursor
the hub no longer accepts starts again from a snapshot: no cursor, and the first
page's ``reset: true`` drops what was held.

Invariant: the cursor saved is always the cursor of the page whose changes are
in the saved set; the two are written in one file, so they never disagree.

Every page is checked against the hub's transparency log before it is applied
(logcheck.py, PROTOCOL.md 12 r2): the compact range of each log and the pinned log
key are in the same file, so the ranges always are those of the saved set. A page
that does not match raises `LogMismatch` and nothing of it is applied or saved.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import logcheck
from .errors import ClientError, HubError
from .hub import HubClient
from .logcheck import LogRange, Snapshot
from .protocol import note
from .protocol.times import read_rfc3339

__all__ = ["FeedState", "SyncResult", "atomic_write", "sync"]

VERSION = 2  # 1 had no log ranges: such a state costs one snapshot


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the directory."""
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    if os.name == "posix":
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _expired(entry: dict[str, Any], now: float) -> bool:
    text = entry.get("expires_at")
    if not isinstance(text, str):
        return False
    try:
        when = read_rfc3339(text)
    except ValueError:  # not a time the hub writes: never drop an entry on a guess
        return False
    return when.timestamp() <= now


@dataclass(slots=True)
class FeedState:
    cursor: str | None = None
    active: dict[str, dict[str, Any]] = field(default_factory=dict)
    synced_at: float | None = None  # when a page was last applied
    # The hub's log verifier key, pinned at enrollment (or the first pull).
    log_key: str | None = None
    # Each log's compact range: every leaf of it this node was served, verified.
    ranges: dict[str, LogRange] = field(default_factory=dict)
    # A snapshot in progress: the checkpoints its pages carried.
    snapshot: Snapshot | None = None
    # The last checkpoint verified per log (for audit and cosigning).
    checkpoints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> FeedState:
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise ClientError(f"cannot read the feed state {path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            log_key = data.get("log_key")
            if data.get("version") != VERSION:
                # An older state: a fresh snapshot, but the pinned key stays pinned.
                return cls(log_key=str(log_key) if isinstance(log_key, str) else None)
            active = {str(e["id"]): dict(e) for e in data.get("active", [])}
            cursor = data.get("cursor")
            synced = data.get("synced_at")
            ranges = {str(k): LogRange.from_json(v) for k, v in data.get("ranges", {}).items()}
            snap = data.get("snapshot")
            snapshot = Snapshot(dict(snap)) if isinstance(snap, dict) else None
            checkpoints = {str(k): str(v) for k, v in data.get("checkpoints", {}).items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            # Unreadable state costs one snapshot, not an outage.
            return cls()
        return cls(
            cursor=str(cursor) if cursor else None,
            active=active,
            synced_at=float(synced) if synced is not None else None,
            log_key=str(log_key) if isinstance(log_key, str) else None,
            ranges=ranges,
            snapshot=snapshot,
            checkpoints=checkpoints,
        )

    def save(self, path: Path) -> None:
        data = {
            "version": VERSION,
            "cursor": self.cursor,
            "synced_at": self.synced_at,
            "active": sorted(self.active.values(), key=lambda e: str(e.get("id"))),
            "log_key": self.log_key,
            "ranges": {log: r.to_json() for log, r in sorted(self.ranges.items())},
            "snapshot": self.snapshot.checkpoints if self.snapshot is not None else None,
            "checkpoints": dict(sorted(self.checkpoints.items())),
        }
        atomic_write(Path(path), json.dumps(data, separators=(",", ":")).encode(), 0o600)

    def apply(self, page: dict[str, Any], now: float) -> bool:
        """Apply one feed page; whether the active set changed.

        Within a page an id is in ``added`` or ``removed``, not both, so the
        order of the two lists does not matter (PROTOCOL.md section 8).
        """
        before = self.active.copy() if page.get("reset") else None
        changed = False
        if before is not None:
            self.active.clear()
        for entry in page.get("added") or []:
            entry_id = str(entry["id"])
            if self.active.get(entry_id) != entry:
                changed = True
            self.active[entry_id] = dict(entry)
        for entry in page.get("removed") or []:
            if self.active.pop(str(entry["id"]), None) is not None:
                changed = True
        if before is not None:
            # A reset page is a change only if the set differs from what was held.
            changed = before != self.active
        self.cursor = str(page["cursor"]) if page.get("cursor") else None
        self.synced_at = now
        return changed

    def current(self, now: float) -> list[dict[str, Any]]:
        """The active decisions, minus any whose expiry passed before the hub said so."""
        return [e for e in self.active.values() if not _expired(e, now)]


@dataclass(slots=True)
class SyncResult:
    changed: bool = False
    pages: int = 0
    restarted: str | None = None  # why a snapshot replaced the cursor, if it did


async def sync(
    client: HubClient,
    state: FeedState,
    path: Path,
    *,
    wait: int = 0,
    limit: int = 1000,
    clock: Callable[[], float] = time.time,
    on_page: Callable[[int, int], None] | None = None,
) -> SyncResult:
    """Follow the feed from ``state.cursor`` until ``more`` is false, saving each page.

    ``wait`` long-polls only once the client is caught up (on a delta cursor);
    pages during a snapshot or a backlog are read without waiting.
    """
    result = SyncResult()
    before = {k: dict(v) for k, v in state.active.items()}
    more = True
    first = True
    while more:
        poll = wait if (first and state.cursor) else 0
        try:
            page = await client.feed(state.cursor, limit=limit, wait=poll)
        except HubError as exc:
            stale = exc.status == 410 or (exc.status == 400 and state.cursor is not None)
            if not stale or result.restarted:
                raise
            result.restarted = (
                "the hub no longer has the changes since the saved cursor"
                if exc.status == 410
                else "the hub did not accept the saved cursor"
            )
            state.cursor = None
            continue
        first = False
        await _verify(client, state, page)
        state.apply(page, clock())
        result.pages += 1
        state.save(path)
        more = bool(page.get("more"))
        if on_page is not None:
            on_page(result.pages, len(state.active))
    result.changed = state.active != before
    return result


async def pin_log_key(client: HubClient, state: FeedState) -> note.Verifier:
    """The pinned log verifier key; pinned now from the hub if none is (first use)."""
    if state.log_key is None:
        keys = {str(entry.get("verifier_key")) for entry in await client.transparency_logs()}
        if len(keys) != 1:
            raise ClientError("the hub names no single transparency log key")
        state.log_key = keys.pop()
    try:
        return note.parse_verifier_key(state.log_key)
    except note.NoteError as exc:
        raise ClientError(f"the pinned log key is not a verifier key ({exc})") from None


async def _verify(client: HubClient, state: FeedState, page: dict[str, Any]) -> None:
    """Check a page against the log (logcheck.py) and, once it holds, record the new
    ranges in `state` for `apply`; raises LogMismatch and changes nothing if not."""
    verifier = await pin_log_key(client, state)
    in_snapshot = bool(page.get("reset")) or state.snapshot is not None
    if not in_snapshot:
        state.ranges = logcheck.check_delta(state.ranges, page, verifier)
        state.checkpoints.update(page.get("checkpoints") or {})
        return
    snapshot = Snapshot() if page.get("reset") else Snapshot(dict(state.snapshot.checkpoints))  # type: ignore[union-attr]
    logcheck.check_snapshot_page(snapshot, page, verifier)
    if page.get("more"):
        state.snapshot = snapshot
        return
    ranges: dict[str, LogRange] = {}
    for log, text in sorted(snapshot.checkpoints.items()):
        cp = logcheck.opened(text, log, verifier)
        before = state.ranges.get(log)
        proof = None
        if before is not None and 0 < before.size <= cp.size:
            proof = await client.log_consistency(log, before.size, cp.size)
        frontier = await client.log_frontier(log, cp.size)
        ranges[log] = logcheck.range_of_frontier(log, cp, frontier, before, proof)
    state.ranges, state.snapshot = ranges, None
    state.checkpoints = dict(snapshot.checkpoints)
