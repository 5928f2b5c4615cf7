"""`honeymesh-node`: a sensor's command line (PROTOCOL.md section 12).

State lives in the node's home (``--home``, ``HONEYMESH_NODE_HOME``, default
``~/.honeymesh``): ``node.key`` (0600), ``node.json`` (the enrollment),
``spool.sqlite`` (signals not yet acknowledged), ``feed.json`` (cursor and
active set) and ``hub-addresses.json`` (the hub's last resolved addresses, kept
out of every export even when its name fails to resolve). Output for scripts
goes to stdout, one line per item; progress, notes and the one-sentence errors
go to stderr.

The modules: ``parser`` (flags), ``home`` (the state directory and the hub
client), ``commands`` (one module per group of commands), ``addresses`` (the
hub's own addresses), ``output`` (wording and export files), ``watch`` (the
long-poll loop).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..common import run_command
from .home import PROG
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return run_command(PROG, args.debug, lambda: args.func(args))
