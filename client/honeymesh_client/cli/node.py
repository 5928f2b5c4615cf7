"""`honeymesh-node`: a sensor's command line (PROTOCOL.md section 12).

State lives in the node's home (``--home``, ``HONEYMESH_NODE_HOME``, default
``~/.honeymesh``): ``node.key`` (0600), ``node.json`` (the enrollment),
``spool.sqlite`` (signals not yet acknowledged), ``feed.json`` (cursor and
active set) and ``hub-addresses.json`` (the hub's last resolved addresses, kept
out of every export even when its name fails to resolve). Output for scripts
goes to stdout, one line per item; progress, notes and the one-sentence errors
go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import signal as signals_mod
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from .. import export
from ..errors import ClientError, HubError, HubUnreachable
from ..feedstate import FeedState, atomic_write, sync
from ..hub import HubClient, RetryPolicy
from ..protocol import ijson
from ..protocol.dsse import build_envelope
from ..protocol.errors import ProtocolError
from ..protocol.keys import NodeKey
from ..signals import SignalError, complete_signal, summary
from ..spool import Spool, flush
from .common import Parser, UsageError, fail_line, retry_policy, run_command

PROG = "honeymesh-node"
KEY_FILE = "node.key"
NODE_FILE = "node.json"
SPOOL_FILE = "spool.sqlite"
FEED_FILE = "feed.json"
HUB_ADDRESSES_FILE = "hub-addresses.json"  # the hub's last resolved addresses
WATCH_WAIT = 55  # seconds a long-poll waits (the hub allows up to 60)
WATCH_BACKOFF = RetryPolicy(base_delay=0.5, max_delay=30.0)  # between failed long-polls

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
  honeymesh-node status

environment:
  HONEYMESH_NODE_HOME        the node's state directory (default ~/.honeymesh)
  HONEYMESH_HUB_URL          overrides the enrolled hub URL
  HONEYMESH_RETRY_ATTEMPTS   tries per request, the first included (default 5)
  HONEYMESH_RETRY_MAX_DELAY  longest wait between tries, Retry-After included (default 30)
"""


# ---------------------------------------------------------------------------- home


@dataclass(frozen=True, slots=True)
class Home:
    path: Path

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def node_path(self) -> Path:
        return self.path / NODE_FILE

    @property
    def spool_path(self) -> Path:
        return self.path / SPOOL_FILE

    @property
    def feed_path(self) -> Path:
        return self.path / FEED_FILE

    @property
    def hub_addresses_path(self) -> Path:
        return self.path / HUB_ADDRESSES_FILE

    def ensure(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def key(self) -> NodeKey:
        try:
            return NodeKey.load(self.key_path)
        except FileNotFoundError:
            raise ClientError(
                f"no node key in {self.path}; run `{PROG} keygen` first (or pass --home)"
            ) from None
        except ValueError as exc:
            raise ClientError(str(exc)) from None

    def enrollment(self) -> dict[str, Any]:
        try:
            data = json.loads(self.node_path.read_text())
        except FileNotFoundError:
            raise ClientError(
                f"this node is not enrolled (no {self.node_path}); run `{PROG} enroll` first"
            ) from None
        except (OSError, ValueError):
            raise ClientError(f"{self.node_path} is not readable JSON; enroll again") from None
        if not isinstance(data, dict) or not data.get("node_id"):
            raise ClientError(f"{self.node_path} holds no enrollment; enroll again")
        return data

    def hub_url(self, enrollment: dict[str, Any]) -> str:
        return os.environ.get("HONEYMESH_HUB_URL", "").strip() or str(enrollment.get("hub", ""))

    def spool(self) -> Spool:
        self.ensure()
        return Spool(self.spool_path)


def _home(args: Any) -> Home:
    raw = args.home or os.environ.get("HONEYMESH_NODE_HOME", "").strip() or "~/.honeymesh"
    return Home(Path(raw).expanduser())


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _client(home: Home, *, attempts: int = 5, max_delay: float = 30.0) -> HubClient:
    enrollment = home.enrollment()
    url = home.hub_url(enrollment)
    if not url:
        raise ClientError(f"no hub URL in {home.node_path}; set HONEYMESH_HUB_URL or enroll again")
    return HubClient(
        url,
        key=home.key(),
        retry=retry_policy(attempts, max_delay),
        on_retry=lambda m: _note(f"{PROG}: {m}"),
    )


# ---------------------------------------------------------------------------- keygen, enroll


async def cmd_keygen(args: Any) -> int:
    home = _home(args)
    home.ensure()
    key = NodeKey.generate()
    try:
        key.save(home.key_path, force=args.force)
    except FileExistsError:
        raise ClientError(
            f"a key already exists at {home.key_path}; pass --force to replace it "
            "(the node must then enroll again)"
        ) from None
    if args.force and home.node_path.exists():
        home.node_path.unlink()
        _note(f"{PROG}: the previous enrollment belonged to the old key; enroll again.")
    print(f"keyid {key.keyid}")
    print(f"public_key {key.public_b64}")
    print(f"key file {home.key_path} (mode 0600)")
    return 0


def _read_token(args: Any) -> str:
    if args.token and args.token_file:
        raise UsageError("give --token or --token-file, not both")
    if args.token:
        return str(args.token).strip()
    if not args.token_file:
        raise UsageError("enroll needs --token TOKEN or --token-file FILE ('-' for stdin)")
    if args.token_file == "-":  # noqa: S105 (a file name, not a secret)
        text = sys.stdin.readline()
    else:
        try:
            text = Path(args.token_file).read_text()
        except OSError as exc:
            raise ClientError(f"cannot read {args.token_file}: {exc.strerror}") from None
    token = text.strip()
    if not token:
        raise ClientError("the token file is empty")
    return token


async def cmd_enroll(args: Any) -> int:
    home = _home(args)
    hub = args.hub or os.environ.get("HONEYMESH_HUB_URL", "").strip()
    if not hub:
        raise UsageError("enroll needs --hub URL (or HONEYMESH_HUB_URL)")
    token = _read_token(args)
    home.ensure()
    if not home.key_path.exists():
        NodeKey.generate().save(home.key_path)
        _note(f"{PROG}: made a new key at {home.key_path}.")
    key = home.key()
    labels = _labels(args.label)
    name = args.name or socket.gethostname()
    async with HubClient(hub, key=key, retry=retry_policy()) as client:
        try:
            result = await client.enroll(token, name, labels)
        except HubError as exc:
            if exc.code != "conflict":
                raise
            # A retry after a lost answer: the first try may have enrolled us already.
            try:
                me = await client.node_self()
            except HubError:
                raise exc from None
            result = {"node_id": me["node_id"], "tenant_id": me["tenant_id"], "keyid": key.keyid}
    enrollment = {
        "hub": client.base_url + urlsplit(hub).path.rstrip("/"),
        "node_id": result["node_id"],
        "tenant_id": result["tenant_id"],
        "keyid": result.get("keyid", key.keyid),
        "name": name,
        "enrolled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write(home.node_path, (json.dumps(enrollment, indent=2) + "\n").encode(), 0o600)
    # A cursor is bound to a node: a new enrollment starts the feed afresh.
    with contextlib.suppress(FileNotFoundError):
        home.feed_path.unlink()
    print(f"enrolled node {result['node_id']} in tenant {result['tenant_id']} at {hub}")
    return 0


def _labels(items: Sequence[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise UsageError(f"--label takes NAME=VALUE, not {item!r}")
        labels[name] = value
    return labels


# ---------------------------------------------------------------------------- publish, spool, flush


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
    labels = _labels(args.label)
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


def _status_line(signal_id: str, status: str, what: str, extra: str = "") -> str:
    return f"{signal_id} {status} {what}" + (f" {extra}" if extra else "")


def _result_extra(result: dict[str, Any]) -> str:
    if result.get("status") == "rejected":
        error = result.get("error") or {}
        return f"{error.get('code')}: {error.get('detail', '')}".strip()
    if result.get("candidate_id"):
        return f"candidate {result['candidate_id']} {result.get('candidate_state', '')}".strip()
    return ""


async def cmd_publish(args: Any) -> int:
    home = _home(args)
    enrollment = home.enrollment()
    key = home.key()
    node_id = str(enrollment["node_id"])
    raw_signals: list[tuple[str, dict[str, Any] | None, str]] = []  # (label, fields, error)
    if args.ip or args.cidr:
        raw_signals.append(("flags", _signal_from_flags(args), ""))
    else:
        for n, line in _ndjson_lines(args):
            if not line.strip():
                continue
            try:
                obj = ijson.loads(line.strip().encode())
            except ProtocolError as exc:
                raw_signals.append((f"line {n}", None, exc.detail))
                continue
            if not isinstance(obj, dict):
                raw_signals.append((f"line {n}", None, "a signal is a JSON object"))
                continue
            raw_signals.append((f"line {n}", obj, ""))
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
            order.append((None, _status_line("-", "invalid", label, error)))
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
        async with _client(home, attempts=3, max_delay=5.0) as client:
            report = await flush(spool, client)
        waiting, _ = spool.depth()
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
                why = _result_extra(result)
            print(_status_line(sid, "spooled", what, f"({why})"))
            continue
        status = str(result.get("status"))
        if status == "rejected":
            failed = True
        print(_status_line(sid, status, what, _result_extra(result)))
    mine = {sid for sid, _ in order if sid is not None}
    others = len(set(report.results) - mine)
    if others:
        _note(f"{PROG}: also sent {others} signals that waited in the spool.")
    if report.stopped:
        _note(f"{PROG}: {waiting} signals wait in the spool; `{PROG} flush` sends them.")
        if not report.transient:
            fail_line(PROG, report.stopped)
            return 1
    return 1 if failed else 0


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


async def cmd_spool(args: Any) -> int:
    home = _home(args)
    with home.spool() as spool:
        if args.drop_rejected:
            print(f"dropped {spool.drop_rejected()} rejected signals")
            return 0
        entries = spool.entries()
    if args.json:
        print(
            json.dumps(
                {
                    "signals": [
                        {
                            "id": e.id,
                            "state": e.state,
                            "summary": e.summary,
                            "spooled_at": e.spooled_at,
                            "attempts": e.attempts,
                            "reason": e.reason,
                        }
                        for e in entries
                    ]
                }
            )
        )
        return 0
    if not entries:
        print("the spool is empty: the hub has every signal")
        return 0
    now = time.time()
    for e in entries:
        why = e.reason or "not sent yet"
        print(
            f"{e.id} {e.state} {e.summary} age {_age(now - e.spooled_at)} tries {e.attempts}: {why}"
        )
    waiting = sum(1 for e in entries if e.state == "waiting")
    _note(f"{waiting} waiting, {len(entries) - waiting} rejected")
    return 0


async def cmd_flush(args: Any) -> int:
    home = _home(args)
    with home.spool() as spool:
        if spool.depth()[0] == 0:
            print("nothing to send: the spool holds no waiting signal")
            return 0
        async with _client(home) as client:
            report = await flush(
                spool,
                client,
                batch=args.batch,
                on_result=lambda sid, r: print(
                    f"{sid} {r.get('status')} {_result_extra(r)}".rstrip(), flush=True
                ),
            )
        waiting, rejected = spool.depth()
    _note(
        f"{PROG}: {report.count('accepted')} accepted, {report.count('duplicate')} duplicate, "
        f"{report.count('rejected')} rejected; {waiting} still waiting, "
        f"{rejected} kept as rejected."
    )
    if report.stopped:
        raise ClientError(f"{waiting} signals still wait: {report.stopped}")
    return 0


# ---------------------------------------------------------------------------- pull, watch


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str], Sequence[str]]  # a host name to its addresses; OSError if it fails


def _getaddrinfo(host: str) -> Sequence[str]:
    return [str(i[4][0]) for i in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]


def _address(text: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def _ordered(found: set[Address]) -> list[Address]:
    return sorted(found, key=lambda a: (a.version, int(a)))


def _protected_addresses(url: str, resolve: Resolve | None = None) -> list[Address] | None:
    """Every address the hub's host name resolves to (or is); None when it does not resolve."""
    host = urlsplit(url).hostname or ""
    literal = _address(host)
    if literal is not None:
        return [literal]
    try:
        found = {a for text in (resolve or _getaddrinfo)(host) if (a := _address(text)) is not None}
    except (OSError, UnicodeError):
        return None
    return _ordered(found) or None


def _known_hub_addresses(home: Home, host: str) -> list[Address]:
    """The addresses last resolved for ``host``, kept in the home; [] if none."""
    try:
        data = json.loads(home.hub_addresses_path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("host") != host:
        return []
    texts = data.get("addresses")
    if not isinstance(texts, list):
        return []
    return [a for t in texts if isinstance(t, str) and (a := _address(t)) is not None]


def _hub_addresses(
    home: Home, hub_url: str, peer: str | None, resolve: Resolve | None = None
) -> list[Address]:
    """The hub's own addresses, never to be blocked (PROTOCOL.md 12).

    Resolved now, and kept in the home when they are; when resolution fails, the
    ones kept last time. The address of the connection the hub answered on is
    protected too. Knowing none, no export may be written: ClientError.
    """
    host = urlsplit(hub_url).hostname or ""
    resolved = _protected_addresses(hub_url, resolve)
    if resolved is not None:
        found = set(resolved)
        if _address(host) is None and _known_hub_addresses(home, host) != resolved:
            record = {"host": host, "addresses": [str(a) for a in resolved]}
            home.ensure()
            atomic_write(home.hub_addresses_path, json.dumps(record).encode() + b"\n")
    else:
        found = set(_known_hub_addresses(home, host))
        if found:
            _note(f"{PROG}: cannot resolve {host}; protecting its last known addresses.")
    if peer is not None and (addr := _address(peer)) is not None:
        found.add(addr)
    if not found:
        raise ClientError(
            f"cannot resolve the hub's host {host} and no earlier address of it is known, so no "
            "export was written (the last files are kept), lest it block the hub"
        )
    return _ordered(found)


def _render(
    home: Home,
    state: FeedState,
    fmt: str,
    hub_url: str,
    peer: str | None = None,
    resolve: Resolve | None = None,
) -> str:
    entries = state.current(time.time())
    protected = _hub_addresses(home, hub_url, peer, resolve)
    kept, dropped = export.exclude(entries, protected)
    for entry in dropped:
        ind = entry.get("indicator") or {}
        _note(
            f"{PROG}: left out {ind.get('value')} (decision {entry.get('id')}): it covers the "
            f"hub's own address."
        )
    return export.render(fmt, kept)


def _write_output(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write(Path(output), text.encode())


def _progress(stream: TextIO) -> Any:
    if not stream.isatty():
        return None

    def show(pages: int, size: int) -> None:
        if pages > 1:
            stream.write(f"\rsyncing the feed: page {pages}, {size} decisions ")
            stream.flush()

    return show


async def cmd_pull(args: Any) -> int:
    home = _home(args)
    state = FeedState.load(home.feed_path)
    async with _client(home) as client:
        result = await sync(
            client, state, home.feed_path, limit=args.limit, on_page=_progress(sys.stderr)
        )
        hub_url, peer = client.base_url, client.peer_address
    if result.pages > 1 and sys.stderr.isatty():
        sys.stderr.write("\n")
    if result.restarted:
        _note(f"{PROG}: {result.restarted}; synced a fresh snapshot.")
    _write_output(_render(home, state, args.format, hub_url, peer), args.output)
    if args.output and args.output != "-":
        _note(f"{PROG}: wrote {len(state.active)} decisions to {args.output} ({args.format}).")
    return 0


def _run_exec(command: str, output: str) -> None:
    env = dict(os.environ, HONEYMESH_OUTPUT=output)
    done = subprocess.run(["/bin/sh", "-c", command], env=env, check=False)  # noqa: S603
    if done.returncode != 0:
        fail_line(PROG, f"--exec command exited with status {done.returncode}")


async def cmd_watch(args: Any) -> int:
    home = _home(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signals_mod.SIGTERM, signals_mod.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    state = FeedState.load(home.feed_path)
    first = True
    failures = 0
    async with _client(home, attempts=2, max_delay=10.0) as client:
        while not stop.is_set():
            syncing = asyncio.ensure_future(
                sync(client, state, home.feed_path, wait=0 if first else WATCH_WAIT)
            )
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({syncing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not syncing.done():
                syncing.cancel()
                with contextlib.suppress(asyncio.CancelledError, ClientError):
                    await syncing
                break
            try:
                result = syncing.result()
            except HubUnreachable as exc:
                failures += 1
                await _backoff(stop, failures, exc, None)
                continue
            except HubError as exc:  # RateLimited included: always transient
                if not exc.transient:
                    raise
                failures += 1
                await _backoff(stop, failures, exc, exc.retry_after)
                continue
            if failures:
                _note(f"{PROG}: the hub answers again.")
            failures = 0
            if result.restarted:
                _note(f"{PROG}: {result.restarted}; synced a fresh snapshot.")
            if first or result.changed:
                text = _render(home, state, args.format, client.base_url, client.peer_address)
                _write_output(text, args.output)
                _note(f"{PROG}: wrote {len(state.active)} decisions to {args.output}.")
                if args.exec:
                    await asyncio.to_thread(_run_exec, args.exec, args.output)
            first = False
    return 0


async def _backoff(stop: asyncio.Event, failures: int, exc: Exception, hint: float | None) -> None:
    # Equal jitter: at least half the ceiling, so a hub that is down is not hammered.
    delay = WATCH_BACKOFF.backoff(min(failures, 8) + 1, lambda: 0.5 + random.random() / 2)
    if hint is not None:
        delay = max(delay, min(hint, 300.0))
    _note(f"{PROG}: {exc}; trying again in {delay:.0f} s.")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


# ---------------------------------------------------------------------------- verify, status


async def cmd_verify(args: Any) -> int:
    home = _home(args)
    state = FeedState.load(home.feed_path)
    entry = state.active.get(args.decision_id, {})
    async with _client(home) as client:
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
        _note(
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
    _note(f"{PROG}: all {len(report.publishers)} publisher signatures hold.")
    return 0


async def cmd_status(args: Any) -> int:
    home = _home(args)
    enrollment = home.enrollment()
    key = home.key()
    print(f"node      {enrollment.get('node_id')} ({enrollment.get('name')})")
    print(f"keyid     {key.keyid}")
    print(f"hub       {home.hub_url(enrollment)}")
    with home.spool() as spool:
        waiting, rejected = spool.depth()
        oldest = spool.entries("waiting", limit=1)
    age = f", oldest {_age(time.time() - oldest[0].spooled_at)}" if oldest else ""
    print(f"spool     {waiting} waiting{age}, {rejected} rejected")
    state = FeedState.load(home.feed_path)
    if state.synced_at is None:
        print("feed      never synced")
    else:
        print(
            f"feed      {len(state.active)} decisions, cursor synced "
            f"{_age(time.time() - state.synced_at)} ago"
        )
    async with _client(home, attempts=2, max_delay=5.0) as client:
        me = await client.node_self()
    limits = me.get("limits") or {}
    print(f"tenant    {me.get('tenant_id')} plan {me.get('plan')}")
    print(f"features  {', '.join(me.get('features') or []) or 'none'}")
    print(f"trusted   {'yes' if me.get('trusted') else 'no'}")
    print("limits    " + ", ".join(f"{k}={v}" for k, v in sorted(limits.items())))
    return 0


# ---------------------------------------------------------------------------- parser


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
            p.add_argument("--limit", type=int, default=1000, help=argparse_suppress())
            p.set_defaults(func=cmd_pull)

    p = sub.add_parser(
        "verify",
        help="check every publisher signature behind a decision",
        epilog="example:\n  honeymesh-node verify 0b5a3f0e-3c1d-4a53-9a57-2f0e8c1d9b11",
    )
    p.add_argument("decision_id", metavar="DECISION_ID")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "status",
        help="node, hub, plan and limits, spool depth, feed age",
        epilog="example:\n  honeymesh-node status",
    )
    p.set_defaults(func=cmd_status)
    return parser


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return run_command(PROG, args.debug, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
