"""The argument parser of `honeymesh-node` (PROTOCOL.md 12: names and flags are a contract)."""

from __future__ import annotations

import argparse

from ... import export
from ..common import Parser
from .commands.audit import cmd_audit
from .commands.feed import cmd_pull
from .commands.identity import cmd_enroll, cmd_keygen
from .commands.info import cmd_status, cmd_verify
from .commands.publish import cmd_publish
from .commands.spool import cmd_flush, cmd_spool
from .home import PROG
from .watch import cmd_watch

EPILOG = """\
examples:
  honeymesh-node keygen
  honeymesh-node enroll --hub https://hub.example:8700 --token-file /etc/honeymesh/token
  honeymesh-node publish --ip 203.0.113.7 --scenario ssh/brute-force --confidence 90
  tail -f events.ndjson | honeymesh-node publish
  honeymesh-node spool && honeymesh-node flush
  honeymesh-node pull --format nft --output /etc/nftables.d/honeymesh.nft
  honeymesh-node watch --format ipset --output /run/hm.ipset --exec 'ipset restore -f /run/hm.ipset'
  honeymesh-node verify 6f1c2d8e-...   (a decision id from pull --format json)
  honeymesh-node audit
  honeymesh-node status

environment:
  HONEYMESH_NODE_HOME        the node's state directory (default ~/.honeymesh)
  HONEYMESH_HUB_URL          overrides the enrolled hub URL
  HONEYMESH_RETRY_ATTEMPTS   tries per request, the first included (default 5)
  HONEYMESH_RETRY_MAX_DELAY  longest wait between tries, Retry-After included (default 30)
"""


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="A HoneyMesh node: enroll with a hub, publish signals, pull the blocklist.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--home", help="state directory (default $HONEYMESH_NODE_HOME or ~/.honeymesh)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser(
        "keygen",
        help="make the node's Ed25519 key (file mode 0600)",
        epilog=(
            "examples:\n  honeymesh-node keygen\n  honeymesh-node --home /var/lib/hm keygen --force"
        ),
    )
    p.add_argument("--force", action="store_true", help="replace an existing key")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "enroll",
        help="enroll this node's key with a hub",
        epilog=(
            "examples:\n"
            "  honeymesh-node enroll --hub http://127.0.0.1:8700 --token hme_...\n"
            "  honeymesh-node enroll --hub https://hub.example --token-file - < token.txt"
        ),
    )
    p.add_argument("--hub", help="the hub's URL (default $HONEYMESH_HUB_URL)")
    p.add_argument("--token", help="the enrollment token (hme_...)")
    p.add_argument("--token-file", help="read the token from FILE ('-' for stdin)")
    p.add_argument("--name", help="this node's name (default the host name)")
    p.add_argument("--label", action="append", metavar="K=V", help="a node label (repeatable)")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser(
        "publish",
        help="sign and send signals (kept in the spool until the hub has them)",
        epilog=(
            "examples:\n"
            "  honeymesh-node publish --ip 203.0.113.7 --scenario ssh/brute-force\n"
            "  honeymesh-node publish --cidr 198.51.100.0/24 --scenario scan/syn --share mesh\n"
            "  honeymesh-node publish --file signals.ndjson\n"
            '  echo \'{"indicator":{"type":"ip","value":"203.0.113.9"},"scenario":"x/y"}\' |'
            " honeymesh-node publish\n\n"
            "NDJSON lines hold signal fields; v, id, node_id and observed_at are filled in,\n"
            "and so are action, mode, confidence, ttl_seconds and share when missing.\n"
            "Output: one line per signal: ID STATUS INDICATOR SCENARIO (SHARE) [DETAIL].\n"
            "When the hub cannot be reached the status is `spooled` and the exit is 0."
        ),
    )
    p.add_argument("--ip", help="the address to report")
    p.add_argument("--cidr", help="the range to report")
    p.add_argument("--scenario", help="what it did, e.g. redis/unauthenticated-config-set")
    p.add_argument("--confidence", type=int, help="0 to 100 (default 70)")
    p.add_argument("--ttl", type=int, help="seconds a block should last (default 86400)")
    p.add_argument("--share", choices=("tenant", "mesh"), help="who may see it (default tenant)")
    p.add_argument("--mode", choices=("test", "enforce", "lockdown"), help="default enforce")
    p.add_argument("--action", choices=("blocked", "observed"), help="default blocked")
    p.add_argument("--service", help="the service attacked, e.g. ssh")
    p.add_argument("--port", type=int, help="the service's port")
    p.add_argument("--label", action="append", metavar="K=V", help="a label (tenant share only)")
    p.add_argument("--file", help="NDJSON signals from FILE ('-' for stdin)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser(
        "spool",
        help="list signals the hub has not acknowledged, and why",
        epilog="examples:\n  honeymesh-node spool\n  honeymesh-node spool --json",
    )
    p.add_argument("--json", action="store_true", help='print {"signals": [...]}')
    p.add_argument("--drop-rejected", action="store_true", help="forget rejected signals")
    p.set_defaults(func=cmd_spool)

    p = sub.add_parser(
        "flush",
        help="send every waiting signal now",
        epilog="example:\n  honeymesh-node flush",
    )
    p.add_argument("--batch", type=int, default=100, help="signals per request (default 100)")
    p.set_defaults(func=cmd_flush)

    for name in ("pull", "watch"):
        is_watch = name == "watch"
        p = sub.add_parser(
            name,
            help=(
                "follow the feed and rewrite a file on every change"
                if is_watch
                else "sync the feed once and write the active set"
            ),
            epilog=(
                "examples:\n"
                "  honeymesh-node watch --format nft --output /etc/hm.nft \\\n"
                "      --exec 'nft -f /etc/hm.nft'\n"
                "  honeymesh-node watch --format plain --output /run/hm.txt"
                if is_watch
                else "examples:\n"
                "  honeymesh-node pull\n"
                "  honeymesh-node pull --format nft --output /etc/hm.nft && nft -f /etc/hm.nft\n"
                "  honeymesh-node pull --format ipset --output hm.ipset\n"
                "  ipset restore -f hm.ipset"
            )
            + "\n\nAn entry covering the hub's own address is left out (and said so on stderr).",
        )
        p.add_argument(
            "--format", choices=export.FORMATS, default="json" if not is_watch else "plain"
        )
        p.add_argument(
            "--output",
            required=is_watch,
            help="file to write atomically" + ("" if is_watch else " (default stdout)"),
        )
        if is_watch:
            p.add_argument("--exec", help="shell command to run after each rewrite")
            p.set_defaults(func=cmd_watch)
        else:
            p.add_argument("--limit", type=int, default=1000, help=argparse.SUPPRESS)
            p.set_defaults(func=cmd_pull)

    p = sub.add_parser(
        "verify",
        help="check every publisher signature behind a decision",
        epilog="example:\n  honeymesh-node verify 0b5a3f0e-3c1d-4a53-9a57-2f0e8c1d9b11",
    )
    p.add_argument("decision_id", metavar="DECISION_ID")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "audit",
        help="check the hub's transparency logs end to end, then cosign them",
        description=(
            "For each log this node follows: the hub's latest checkpoint extends the tree"
            " the node verified, the checkpoint other nodes cosigned is consistent with"
            " it, and held decisions are in it; then the node cosigns. A mismatch is one"
            " sentence and a non-zero exit."
        ),
        epilog="example:\n  honeymesh-node audit",
    )
    p.add_argument("--sample", type=int, default=64, help="held decisions to prove (default 64)")
    p.add_argument("--no-cosign", action="store_true", help="check only; do not cosign")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "status",
        help="node, hub, plan and limits, spool depth, feed age",
        epilog="example:\n  honeymesh-node status",
    )
    p.set_defaults(func=cmd_status)
    return parser
