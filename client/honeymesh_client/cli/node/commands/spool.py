"""`spool` and `flush`: what waits for the hub, and sending it now."""

from __future__ import annotations

import json
import time
from typing import Any

from ....errors import ClientError
from ....spool import SpoolEntry, flush
from ..home import PROG, home_of, hub_client, note
from ..output import age, result_extra


def _as_json(e: SpoolEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "state": e.state,
        "summary": e.summary,
        "spooled_at": e.spooled_at,
        "attempts": e.attempts,
        "reason": e.reason,
    }


async def cmd_spool(args: Any) -> int:
    home = home_of(args)
    with home.spool() as spool:
        if args.drop_rejected:
            print(f"dropped {spool.drop_rejected()} rejected signals")
            return 0
        entries = spool.entries()
    if args.json:
        print(json.dumps({"signals": [_as_json(e) for e in entries]}))
        return 0
    if not entries:
        print("the spool is empty: the hub has every signal")
        return 0
    now = time.time()
    for e in entries:
        why = e.reason or "not sent yet"
        print(
            f"{e.id} {e.state} {e.summary} age {age(now - e.spooled_at)} tries {e.attempts}: {why}"
        )
    waiting = sum(1 for e in entries if e.state == "waiting")
    note(f"{waiting} waiting, {len(entries) - waiting} rejected")
    return 0


async def cmd_flush(args: Any) -> int:
    home = home_of(args)
    with home.spool() as spool:
        if spool.depth()[0] == 0:
            print("nothing to send: the spool holds no waiting signal")
            return 0
        async with hub_client(home) as client:
            report = await flush(
                spool,
                client,
                batch=args.batch,
                on_result=lambda sid, r: print(
                    f"{sid} {r.get('status')} {result_extra(r)}".rstrip(), flush=True
                ),
            )
        waiting, rejected = spool.depth()
    note(
        f"{PROG}: {report.count('accepted')} accepted, {report.count('duplicate')} duplicate, "
        f"{report.count('rejected')} rejected; {waiting} still waiting, "
        f"{rejected} kept as rejected."
    )
    if report.stopped:
        raise ClientError(f"{waiting} signals still wait: {report.stopped}")
    return 0
