"""`honeymesh-review`: a reviewer's command line (PROTOCOL.md sections 7 and 12).

Talks to the reviewer API with a bearer token. ``show`` checks every
publisher's signature locally with the ``public_key`` the detail carries
(after checking that key's SHA-256 is its keyid): the reviewer need not trust
the hub's word that a node said what it is shown saying.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import ClientError
from ..hub import HubClient
from ..indicators import canonical
from ..provenance import Expectation, KeyInfo, check_publisher
from .common import Parser, UsageError, retry_policy, run_command

PROG = "honeymesh-review"
STATES = ("pending", "approved", "rejected", "expired", "retracted")

EPILOG = """\
examples:
  export HONEYMESH_HUB_URL=http://127.0.0.1:8700 HONEYMESH_REVIEW_TOKEN=hmr_...
  honeymesh-review queue
  honeymesh-review queue --state approved --json | jq '.candidates | length'
  honeymesh-review show 9d0c...
  honeymesh-review claim 9d0c...
  honeymesh-review approve 9d0c... 41aa... --reason "seen on three honeypots" --ttl 86400
  honeymesh-review reject 9d0c... --reason "a customer's scanner"
  honeymesh-review retract 9d0c... --reason "false positive"
"""


def _client(args: Any) -> HubClient:
    hub = args.hub or os.environ.get("HONEYMESH_HUB_URL", "").strip()
    token = args.token or os.environ.get("HONEYMESH_REVIEW_TOKEN", "").strip()
    if not hub:
        raise UsageError("give the hub with --hub URL or HONEYMESH_HUB_URL")
    if not token:
        raise UsageError("give a reviewer token with --token or HONEYMESH_REVIEW_TOKEN")
    return HubClient(hub, token=token, retry=retry_policy())


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines) + "\n"


async def cmd_queue(args: Any) -> int:
    async with _client(args) as client:
        candidates = await client.review_queue(args.state, order=args.order)
    if args.json:
        print(json.dumps({"candidates": candidates}))
        return 0
    if not candidates:
        print(f"no {args.state} candidates")
        return 0
    rows = [
        [
            str(c.get("id")),
            str((c.get("indicator") or {}).get("value")),
            str(c.get("scope")),
            str(c.get("reporters")),
            str(c.get("tenants")),
            str(c.get("signal_count")),
            str(c.get("max_confidence")),
            ",".join(c.get("scenarios") or []),
            str(c.get("claimed_by") or "-"),
        ]
        for c in candidates
    ]
    sys.stdout.write(
        _table(
            rows,
            [
                "ID",
                "INDICATOR",
                "SCOPE",
                "NODES",
                "TENANTS",
                "SIGNALS",
                "CONF",
                "SCENARIOS",
                "CLAIMED",
            ],
        )
    )
    return 0


async def cmd_show(args: Any) -> int:
    async with _client(args) as client:
        c = await client.review_candidate(args.candidate_id)
    if args.json:
        print(json.dumps(c, indent=2))
    ind = c.get("indicator") or {}
    expect = Expectation(
        indicator=canonical(str(ind.get("type")), str(ind.get("value"))),
        scope=c.get("scope"),
        tenant_id=c.get("tenant_id"),
    )
    out = sys.stderr if args.json else sys.stdout
    if not args.json:
        print(f"candidate {c.get('id')}  {ind.get('value')} ({ind.get('type')})")
        scope = c.get("scope")
        if c.get("tenant_id"):
            scope = f"{scope} {c['tenant_id']}"
        print(f"  state       {c.get('state')}   origin {c.get('origin') or '-'}")
        print(f"  scope       {scope}")
        print(f"  scenarios   {', '.join(c.get('scenarios') or [])}")
        print(
            f"  reporters   {c.get('reporters')} nodes, {c.get('tenants')} tenants, "
            f"{c.get('signal_count')} signals, max confidence {c.get('max_confidence')}"
        )
        print(f"  seen        {c.get('first_seen')} .. {c.get('last_seen')}")
        print(f"  expires     {c.get('expires_at') or '-'}")
        if c.get("claimed_by"):
            print(f"  claimed by  {c['claimed_by']} until {c.get('lease_expires_at')}")
        print("  signals:")
    bad = 0
    for s in c.get("signals") or []:
        key = KeyInfo(
            keyid=str(s.get("keyid")),
            public_key=str(s.get("public_key")),
            node_id=str(s.get("node_id")),
            tenant_id=str(s.get("tenant_id")),
        )
        check = check_publisher(
            s.get("envelope"), keyid=key.keyid, node_id=key.node_id, key=key, expect=expect
        )
        verdict = "signature ok" if check.ok else f"signature BAD ({check.problem})"
        if not check.ok:
            bad += 1
        print(
            f"    {s.get('received_at')} node {s.get('node_id')} keyid {str(s.get('keyid'))[:16]}… "
            f"{verdict}",
            file=out,
        )
    if not args.json:
        decisions = c.get("decisions") or []
        if decisions:
            print("  decisions:")
            for d in decisions:
                print(
                    f"    {d.get('time')} {d.get('action')} {d.get('from_state')} -> "
                    f"{d.get('to_state')} by {d.get('actor')}: {d.get('reason')}"
                )
    if bad:
        raise ClientError(f"{bad} publisher signatures do not hold; do not trust this candidate")
    return 0


async def cmd_claim(args: Any) -> int:
    async with _client(args) as client:
        result = await client.claim(args.candidate_id, args.lease)
    until = result.get("lease_expires_at") or f"{args.lease} s from now"
    print(f"claimed {args.candidate_id} until {until}")
    return 0


async def cmd_decide(args: Any) -> int:
    if args.ttl is not None and args.action != "approve":
        raise UsageError("--ttl goes with approve only")
    decisions: list[dict[str, object]] = []
    for cid in args.candidate_ids:
        d: dict[str, object] = {"candidate_id": cid, "action": args.action, "reason": args.reason}
        if args.ttl is not None:
            d["ttl_seconds"] = args.ttl
        decisions.append(d)
    async with _client(args) as client:
        results = await client.decide(decisions)
    refused = 0
    for r in results:
        if r.get("status") == "refused":
            refused += 1
            error = r.get("error") or {}
            print(f"{r.get('candidate_id')} refused {error.get('code')}: {error.get('detail')}")
        else:
            print(f"{r.get('candidate_id')} {r.get('status')} {r.get('state', '')}".rstrip())
    if refused:
        raise ClientError(f"{refused} of {len(results)} decisions were refused")
    return 0


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Review HoneyMesh candidates: list, inspect, claim, decide.",
        epilog=EPILOG,
    )
    parser.add_argument("--hub", help="the hub's URL (default $HONEYMESH_HUB_URL)")
    parser.add_argument("--token", help="reviewer token (default $HONEYMESH_REVIEW_TOKEN)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser(
        "queue",
        help="list candidates (every page)",
        epilog=(
            "examples:\n  honeymesh-review queue\n  honeymesh-review queue --state approved --json"
        ),
    )
    p.add_argument("--state", choices=STATES, default="pending")
    p.add_argument("--order", choices=("reporters", "oldest"), help="default reporters")
    p.add_argument("--json", action="store_true", help='print the API\'s {"candidates": [...]}')
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser(
        "show",
        help="a candidate, its signals with verified signatures, its decisions",
        epilog="example:\n  honeymesh-review show 9d0c2b1e-...",
    )
    p.add_argument("candidate_id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print the API's answer")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "claim",
        help="take a lease so other reviewers' decisions wait",
        epilog="example:\n  honeymesh-review claim 9d0c2b1e-... --lease 600",
    )
    p.add_argument("candidate_id", metavar="ID")
    p.add_argument("--lease", type=int, default=300, help="seconds, 30 to 3600 (default 300)")
    p.set_defaults(func=cmd_claim)

    for action in ("approve", "reject", "retract"):
        p = sub.add_parser(
            action,
            help=f"{action} candidates",
            epilog=(
                f'example:\n  honeymesh-review {action} 9d0c2b1e-... --reason "why"'
                + (" --ttl 86400" if action == "approve" else "")
            ),
        )
        p.add_argument("candidate_ids", metavar="ID", nargs="+")
        p.add_argument("--reason", required=True, help="why (kept in the audit log)")
        if action == "approve":
            p.add_argument("--ttl", type=int, help="seconds the block lasts")
        p.set_defaults(func=cmd_decide, action=action, ttl=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return run_command(PROG, args.debug, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
