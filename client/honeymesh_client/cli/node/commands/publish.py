"""`publish`: sign signals, spool them, and send what the hub will take now."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from ....errors import ClientError
from ....protocol import ijson
from ....protocol.dsse import build_envelope
from ....protocol.errors import ProtocolError
from ....signals import SignalError, complete_signal, summary
from ....spool import FlushReport, flush
from ...common import UsageError, fail_line
from ..home import PROG, home_of, hub_client, note
from ..output import result_extra, status_line
from .identity import parse_labels

Raw = tuple[str, dict[str, Any] | None, str]  # (where it came from, its fields, why not)


def _signal_from_flags(args: Any) -> dict[str, Any]:
    if args.ip and args.cidr:
        raise UsageError("give --ip or --cidr, not both")
    if not args.scenario:
        raise UsageError("publish needs --scenario (e.g. ssh/brute-force)")
    fields: dict[str, Any] = {
        "indicator": {"type": "ip", "value": args.ip}
        if args.ip
        else {"type": "cidr", "value": args.cidr},
        "scenario": args.scenario,
        "confidence": args.confidence,
        "ttl_seconds": args.ttl,
        "share": args.share,
        "mode": args.mode,
        "action": args.action,
    }
    if args.service or args.port is not None:
        if not args.service or args.port is None:
            raise UsageError("--service and --port go together")
        fields["service"] = {"name": args.service, "port": args.port}
    labels = parse_labels(args.label)
    if labels:
        fields["labels"] = labels
    return fields


def _ndjson_lines(args: Any) -> Iterator[tuple[int, str]]:
    if args.file and args.file != "-":
        try:
            with open(args.file, encoding="utf-8") as f:
                yield from enumerate(f, 1)
        except OSError as exc:
            raise ClientError(f"cannot read {args.file}: {exc.strerror}") from None
        return
    if sys.stdin.isatty() and not args.file:
        raise UsageError("give --ip or --cidr, or NDJSON signals with --file FILE or on stdin")
    yield from enumerate(sys.stdin, 1)


def _raw_signals(args: Any) -> list[Raw]:
    """The signals asked for: from the flags, or one per NDJSON line."""
    if args.ip or args.cidr:
        return [("flags", _signal_from_flags(args), "")]
    raw: list[Raw] = []
    for n, line in _ndjson_lines(args):
        if not line.strip():
            continue
        try:
            obj = ijson.loads(line.strip().encode())
        except ProtocolError as exc:
            raw.append((f"line {n}", None, exc.detail))
            continue
        if not isinstance(obj, dict):
            raw.append((f"line {n}", None, "a signal is a JSON object"))
            continue
        raw.append((f"line {n}", obj, ""))
    return raw


def _print_results(order: list[tuple[str | None, str]], report: FlushReport) -> bool:
    """One line per signal, in input order; whether one of them was rejected."""
    failed = False
    for sid, what in order:
        if sid is None:
            print(what)
            continue
        result = report.results.get(sid)
        if result is None or (
            result.get("status") == "rejected"
            and (result.get("error") or {}).get("code") == "rate_limited"
        ):
            why = report.stopped or "waiting in the spool"
            if result is not None:
                why = result_extra(result)
            print(status_line(sid, "spooled", what, f"({why})"))
            continue
        status = str(result.get("status"))
        if status == "rejected":
            failed = True
        print(status_line(sid, status, what, result_extra(result)))
    return failed


async def cmd_publish(args: Any) -> int:
    home = home_of(args)
    enrollment = home.enrollment()
    key = home.key()
    node_id = str(enrollment["node_id"])
    raw_signals = _raw_signals(args)
    if not raw_signals:
        raise UsageError("no signals to publish")

    failed = False
    spooled: list[tuple[str, dict[str, Any], str]] = []
    order: list[tuple[str | None, str]] = []  # (signal id, or None and the line to print)
    for label, fields, error in raw_signals:
        signal = None
        if fields is not None:
            try:
                signal = complete_signal(fields, node_id)
            except SignalError as exc:
                error = str(exc)
        if signal is None:
            if label == "flags":
                raise UsageError(error)
            order.append((None, status_line("-", "invalid", label, error)))
            failed = True
            continue
        envelope = build_envelope(key, ijson.dumps(signal))
        spooled.append((signal["id"], envelope, summary(signal)))
        order.append((signal["id"], summary(signal)))
    if not spooled:
        for _, line in order:
            print(line)
        return 1

    with home.spool() as spool:
        spool.add(spooled)  # on disk (fsync'd) before the hub is tried
        async with hub_client(home, attempts=3, max_delay=5.0) as client:
            report = await flush(spool, client)
        waiting, _ = spool.depth()
    failed = _print_results(order, report) or failed
    mine = {sid for sid, _ in order if sid is not None}
    others = len(set(report.results) - mine)
    if others:
        note(f"{PROG}: also sent {others} signals that waited in the spool.")
    if report.stopped:
        note(f"{PROG}: {waiting} signals wait in the spool; `{PROG} flush` sends them.")
        if not report.transient:  # a refusal time will not cure: say so, exit 1
            fail_line(PROG, report.stopped)
            return 1
    return 1 if failed else 0
