"""`watch`: follow the feed by long-polls and rewrite a file on every change.

A transient failure (the hub unreachable, busy or rate limiting) is waited out
with backoff, as long as it lasts; any other failure ends the command. SIGTERM
and SIGINT end it cleanly, between or during long-polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from typing import Any

from ...audit import audit
from ...errors import ClientError, HubError, HubUnreachable
from ...feedstate import FeedState, SyncResult, sync
from ...hub import HubClient, RetryPolicy
from ..common import fail_line
from .home import PROG, Home, home_of, hub_client, note
from .output import render, write_output

WATCH_WAIT = 55  # seconds a long-poll waits (the hub allows up to 60)
COSIGN_EVERY = 600.0  # seconds between audits and cosignatures (PROTOCOL.md 12 r2)
WATCH_BACKOFF = RetryPolicy(base_delay=0.5, max_delay=30.0)  # between failed long-polls


def _run_exec(command: str, output: str) -> None:
    env = dict(os.environ, HONEYMESH_OUTPUT=output)
    done = subprocess.run(["/bin/sh", "-c", command], env=env, check=False)  # noqa: S603
    if done.returncode != 0:
        fail_line(PROG, f"--exec command exited with status {done.returncode}")


async def _backoff(stop: asyncio.Event, failures: int, exc: Exception, hint: float | None) -> None:
    # Equal jitter: at least half the ceiling, so a hub that is down is not hammered.
    delay = WATCH_BACKOFF.backoff(min(failures, 8) + 1, lambda: 0.5 + random.random() / 2)
    if hint is not None:
        delay = max(delay, min(hint, 300.0))
    note(f"{PROG}: {exc}; trying again in {delay:.0f} s.")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


async def _poll(
    client: HubClient, state: FeedState, home: Home, wait: int, stop: asyncio.Event
) -> SyncResult | None:
    """One sync, or None when ``stop`` is set first (the sync is then cancelled)."""
    syncing = asyncio.ensure_future(sync(client, state, home.feed_path, wait=wait))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({syncing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not syncing.done():
        syncing.cancel()
        with contextlib.suppress(asyncio.CancelledError, ClientError):
            await syncing
        return None
    return syncing.result()


async def cmd_watch(args: Any) -> int:
    home = home_of(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    state = FeedState.load(home.feed_path)
    node_id = str(home.enrollment()["node_id"])
    first = True
    failures = 0
    audited = -COSIGN_EVERY
    async with hub_client(home, attempts=2, max_delay=10.0) as client:
        while not stop.is_set():
            try:
                result = await _poll(client, state, home, 0 if first else WATCH_WAIT, stop)
            except (HubUnreachable, HubError) as exc:  # RateLimited is a HubError
                if isinstance(exc, HubError) and not exc.transient:
                    raise
                failures += 1
                await _backoff(stop, failures, exc, getattr(exc, "retry_after", None))
                continue
            if result is None:
                break
            if failures:
                note(f"{PROG}: the hub answers again.")
            failures = 0
            if result.restarted:
                note(f"{PROG}: {result.restarted}; synced a fresh snapshot.")
            if first or result.changed:
                text = render(home, state, args.format, client.base_url, client.peer_address)
                write_output(text, args.output)
                note(f"{PROG}: wrote {len(state.active)} decisions to {args.output}.")
                if args.exec:
                    await asyncio.to_thread(_run_exec, args.exec, args.output)
            first = False
            if state.ranges and time.monotonic() - audited >= COSIGN_EVERY:
                audited = time.monotonic()
                try:
                    await audit(client, state, node_id, home.key(), sample=8)
                except (HubUnreachable, HubError) as exc:  # the next audit tries again
                    note(f"{PROG}: could not audit and cosign the log now: {exc}.")
    return 0
