"""`audit`: the node's transparency logs checked end to end, then cosigned
(honeymesh_client/audit.py says what is checked)."""

from __future__ import annotations

from typing import Any

from ....audit import audit
from ....feedstate import FeedState
from ..home import home_of, hub_client


async def cmd_audit(args: Any) -> int:
    home = home_of(args)
    state = FeedState.load(home.feed_path)
    node_id = str(home.enrollment()["node_id"])
    async with hub_client(home) as client:
        results = await audit(
            client, state, node_id, home.key(), sample=args.sample, cosign=not args.no_cosign
        )
    state.save(home.feed_path)  # a key pinned now stays pinned
    for r in results:
        others = (
            f"consistent with the checkpoint {r.cosigners} other node(s) cosigned at size"
            f" {r.cosigned}"
            if r.cosigned is not None
            else "no cosigned checkpoint yet"
        )
        print(
            f"{r.log}: verified tree of size {r.size}; the hub's latest checkpoint (size"
            f" {r.latest}) extends it; {others}; {r.included} held decision(s) proven in the"
            f" log{'; cosigned' if r.cosigned_now else ''}"
        )
    return 0
