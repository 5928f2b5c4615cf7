"""How the node's commands word things: result lines, ages, exports and their files."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ... import export
from ...feedstate import FeedState, atomic_write
from .addresses import Resolve, hub_addresses
from .home import PROG, Home, note


def status_line(signal_id: str, status: str, what: str, extra: str = "") -> str:
    """One signal's line: ID STATUS WHAT [EXTRA]."""
    return f"{signal_id} {status} {what}" + (f" {extra}" if extra else "")


def result_extra(result: dict[str, Any]) -> str:
    """What follows a publish result's status: the refusal, or the candidate it joined."""
    if result.get("status") == "rejected":
        error = result.get("error") or {}
        return f"{error.get('code')}: {error.get('detail', '')}".strip()
    if result.get("candidate_id"):
        return f"candidate {result['candidate_id']} {result.get('candidate_state', '')}".strip()
    return ""


def age(seconds: float) -> str:
    """A duration in the largest unit that keeps it readable: 90 s, 5 min, 3 h, 2 d."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def render(
    home: Home,
    state: FeedState,
    fmt: str,
    hub_url: str,
    peer: str | None = None,
    resolve: Resolve | None = None,
) -> str:
    """The active set in ``fmt``, less every entry that covers the hub's own address."""
    entries = state.current(time.time())
    protected = hub_addresses(home, hub_url, peer, resolve)
    kept, dropped = export.exclude(entries, protected)
    for entry in dropped:
        ind = entry.get("indicator") or {}
        note(
            f"{PROG}: left out {ind.get('value')} (decision {entry.get('id')}): it covers the "
            f"hub's own address."
        )
    return export.render(fmt, kept)


def write_output(text: str, output: str | None) -> None:
    """To stdout (no ``--output`` or ``-``), else atomically to the file."""
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write(Path(output), text.encode())


def progress(stream: TextIO) -> Any:
    """A feed-page callback that shows progress on a terminal; None elsewhere."""
    if not stream.isatty():
        return None

    def show(pages: int, size: int) -> None:
        if pages > 1:
            stream.write(f"\rsyncing the feed: page {pages}, {size} decisions ")
            stream.flush()

    return show
