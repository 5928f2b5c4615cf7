"""`pull`: sync the feed once and write the active set (the hub's addresses left out)."""

from __future__ import annotations

import sys
from typing import Any

from ....feedstate import FeedState, sync
from ..home import PROG, home_of, hub_client, note
from ..output import progress, render, write_output


async def cmd_pull(args: Any) -> int:
    home = home_of(args)
    state = FeedState.load(home.feed_path)
    async with hub_client(home) as client:
        result = await sync(
            client, state, home.feed_path, limit=args.limit, on_page=progress(sys.stderr)
        )
        hub_url, peer = client.base_url, client.peer_address
    if result.pages > 1 and sys.stderr.isatty():
        sys.stderr.write("\n")
    if result.restarted:
        note(f"{PROG}: {result.restarted}; synced a fresh snapshot.")
    write_output(render(home, state, args.format, hub_url, peer), args.output)
    if args.output and args.output != "-":
        note(f"{PROG}: wrote {len(state.active)} decisions to {args.output} ({args.format}).")
    return 0
