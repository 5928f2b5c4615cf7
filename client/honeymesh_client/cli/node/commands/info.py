"""`verify` and `status`: what vouches for a decision, and how this node stands."""

from __future__ import annotations

import time
from typing import Any

from ....errors import ClientError
from ....feedstate import FeedState
from ..home import PROG, home_of, hub_client, note
from ..output import age


async def cmd_verify(args: Any) -> int:
    home = home_of(args)
    state = FeedState.load(home.feed_path)
    entry = state.active.get(args.decision_id, {})
    async with hub_client(home) as client:
        report = await client.verify_decision(
            args.decision_id, scope=entry.get("scope"), tenant_id=entry.get("tenant_id")
        )
    print(f"decision {report.decision_id} {report.indicator['value']}")
    for p in report.publishers:
        verdict = "ok" if p.signature_ok else "bad"
        line = f"  keyid {p.keyid} node {p.node_id} signature {verdict}"
        if p.problem:
            line += f" ({p.problem})"
        print(line)
    if not report.scope_checked:
        note(
            f"{PROG}: the decision's scope is not in the local feed state, so each payload's "
            f"share was not compared with it; run `{PROG} pull` first to check it too."
        )
    if not report.publishers:
        raise ClientError(
            "the hub returned no signal behind this decision, so nothing vouches for it"
        )
    bad = sum(1 for p in report.publishers if not p.ok)
    if bad:
        raise ClientError(f"{bad} of {len(report.publishers)} publisher checks failed")
    note(f"{PROG}: all {len(report.publishers)} publisher signatures hold.")
    return 0


async def cmd_status(args: Any) -> int:
    home = home_of(args)
    enrollment = home.enrollment()
    key = home.key()
    print(f"node      {enrollment.get('node_id')} ({enrollment.get('name')})")
    print(f"keyid     {key.keyid}")
    print(f"hub       {home.hub_url(enrollment)}")
    with home.spool() as spool:
        waiting, rejected = spool.depth()
        oldest = spool.entries("waiting", limit=1)
    oldest_age = f", oldest {age(time.time() - oldest[0].spooled_at)}" if oldest else ""
    print(f"spool     {waiting} waiting{oldest_age}, {rejected} rejected")
    state = FeedState.load(home.feed_path)
    if state.synced_at is None:
        print("feed      never synced")
    else:
        print(
            f"feed      {len(state.active)} decisions, cursor synced "
            f"{age(time.time() - state.synced_at)} ago"
        )
    async with hub_client(home, attempts=2, max_delay=5.0) as client:
        me = await client.node_self()
    limits = me.get("limits") or {}
    print(f"tenant    {me.get('tenant_id')} plan {me.get('plan')}")
    print(f"features  {', '.join(me.get('features') or []) or 'none'}")
    print(f"trusted   {'yes' if me.get('trusted') else 'no'}")
    print("limits    " + ", ".join(f"{k}={v}" for k, v in sorted(limits.items())))
    return 0
