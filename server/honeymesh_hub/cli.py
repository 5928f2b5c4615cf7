"""`honeymesh-hub`: migrate | serve | admin create-token (PROTOCOL.md section 11).

Failures are one sentence on stderr and a non-zero exit; `--debug` shows the trace.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from multiprocessing import resource_tracker

from .clock import system_clock, to_datetime
from .config import Config, ConfigError, parse_listen

log = logging.getLogger("honeymesh.cli")

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

EXAMPLES = """examples:
  HONEYMESH_DATABASE_URL=postgresql://hub@127.0.0.1/hub honeymesh-hub migrate
  honeymesh-hub serve --listen 0.0.0.0:8700 --workers 2
  honeymesh-hub admin create-token --role admin --name ops
  honeymesh-hub admin create-token --role reviewer --scope mesh --name alice
"""


class CLIError(Exception):
    """A failure the user can act on; printed as one sentence."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="honeymesh-hub",
        description="HoneyMesh Pro federation hub.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="bring the database schema up to date")
    serve = sub.add_parser("serve", help="migrate, then serve until SIGTERM or SIGINT")
    serve.add_argument("--listen", help="HOST:PORT (default HONEYMESH_LISTEN or 127.0.0.1:8700)")
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("HONEYMESH_WORKERS", "1")),
        help="processes sharing the port with SO_REUSEPORT (default 1)",
    )
    admin = sub.add_parser("admin", help="operator commands that talk to the database")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    token = admin_sub.add_parser("create-token", help="make an admin or reviewer token")
    token.add_argument("--role", choices=("admin", "reviewer"), required=True)
    token.add_argument("--scope", help="mesh or a tenant id (reviewer tokens only)")
    token.add_argument("--name", required=True)
    token.add_argument("--expires-at", help="RFC 3339 time after which the token stops working")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .logs import setup_logging

    setup_logging()
    try:
        config = Config.from_env(os.environ)
        if args.command == "migrate":
            applied = asyncio.run(_migrate(config))
            print(f"migrated: {', '.join(applied) if applied else 'already up to date'}")
            return 0
        if args.command == "serve":
            return serve(config, args.listen, args.workers)
        if args.command == "admin" and args.admin_command == "create-token":
            print(asyncio.run(_create_token(config, args)))
            return 0
    except (ConfigError, CLIError) as exc:
        if args.debug:
            raise
        print(f"honeymesh-hub: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


async def _migrate(config: Config) -> list[str]:
    from .store.db import migrate

    try:
        return await migrate(config.database_url)
    except (OSError, TimeoutError) as exc:
        raise CLIError(
            f"cannot reach the database named by HONEYMESH_DATABASE_URL ({exc.__class__.__name__})."
        ) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg"):
            raise CLIError(f"the database refused the connection or a migration: {exc}.") from exc
        raise


async def _create_token(config: Config, args: argparse.Namespace) -> str:
    from .errors import HubError
    from .services.admin import create_api_token, parse_time
    from .store.db import connect

    await _migrate(config)
    conn = await connect(config.database_url)
    try:
        async with conn.transaction():
            expires_at: datetime | None = parse_time(args.expires_at, "--expires-at")
            result = await create_api_token(
                conn,
                to_datetime(system_clock()),
                "cli",
                role=args.role,
                scope=args.scope,
                name=args.name,
                expires_at=expires_at,
            )
    except HubError as exc:
        detail = exc.errors[0]["detail"] if exc.errors else exc.detail
        raise CLIError(f"cannot create the token: {detail}.") from None
    finally:
        await conn.close()
    return result["token"]


def _raise_open_files() -> None:
    """Long-polling nodes each hold a connection: take the hard open-file limit as the
    soft one (a shell's usual 1,024 refuses connections at about a thousand waiters).
    Workers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit", extra={"fields": {"soft": soft}})


def serve(config: Config, listen: str | None, workers: int) -> int:
    if listen:
        host, port = parse_listen(listen, "--listen")
    else:
        host, port = config.listen_host, config.listen_port
    if workers < 1:
        raise CLIError("--workers must be at least 1.")
    event_loop_factory(os.environ)  # a bad HONEYMESH_EVENT_LOOP stops us here, not a worker
    _raise_open_files()
    applied = asyncio.run(_migrate(config))
    if applied:
        log.info("migrated", extra={"fields": {"versions": applied}})
    if config.redis_url is None:
        log.warning(
            "HONEYMESH_REDIS_URL is not set: nonces live in PostgreSQL and rate limits are "
            "counted per process; replicas need Redis for shared limits"
        )
    if workers == 1:
        _serve_worker(config, host, port)
        return 0
    # Every worker writes its metrics to one directory so /metrics sums them all.
    with tempfile.TemporaryDirectory(prefix="honeymesh-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_serve_worker, args=(config, host, port), daemon=False)
            for _ in range(workers)
        ]

        def forward(signum: int, _frame: object) -> None:
            for proc in procs:
                if proc.pid is not None and proc.is_alive():
                    os.kill(proc.pid, signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        # Workers are born with the stop signals blocked (the mask survives exec) and
        # unblock them once they can stop cleanly, so none dies half-way through its
        # imports; a stop meanwhile waits, pending, as does one sent to us now. The
        # resource tracker starts first: its start unblocks these signals.
        resource_tracker.ensure_running()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            for proc in procs:
                proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for proc in procs:
            proc.join()
        return 0 if all(p.exitcode == 0 for p in procs) else 1


class _StopBeforeServing(KeyboardInterrupt):
    """A stop signal that came while the worker was still starting.

    A KeyboardInterrupt, so that asyncio lets it through if it lands in a callback.
    """


def _stop_before_serving(signum: int, _frame: object) -> None:
    raise _StopBeforeServing(signum)


def _serve_worker(config: Config, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully and return (exit status 0).

    A stop signal may come at any moment, more than once (Ctrl-C reaches every process
    of the group and the parent forwards it too): before the event loop runs it ends
    the worker at once; after, the first one starts the graceful stop and the others
    change nothing.
    """
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _stop_before_serving)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a pending stop lands here
        from .logs import setup_logging

        setup_logging()
        with asyncio.Runner(loop_factory=event_loop_factory(os.environ)) as runner:
            runner.run(_run_worker(config, host, port))
    except _StopBeforeServing:
        log.info("stopped before serving", extra={"fields": {"pid": os.getpid()}})
    finally:
        _ignore_stop_signals()


def event_loop_factory(env: Mapping[str, str]) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A worker's event loop: uvloop's (libuv: the same asyncio API, with cheaper loop
    turns and socket reads and writes), or asyncio's own when HONEYMESH_EVENT_LOOP is
    `asyncio`."""
    choice = env.get("HONEYMESH_EVENT_LOOP", "uvloop").strip() or "uvloop"
    if choice == "asyncio":
        return None
    if choice != "uvloop":
        raise CLIError("HONEYMESH_EVENT_LOOP must be uvloop or asyncio.")
    import uvloop

    return uvloop.new_event_loop


def _ignore_stop_signals() -> None:
    """Stopping already: a late duplicate of the stop signal must not cut the exit short."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


async def _run_worker(config: Config, host: str, port: int) -> None:
    from aiohttp import web

    from .app import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=8)
    await runner.setup()
    try:
        if not stop.is_set():
            await web.TCPSite(runner, host, port, reuse_port=True).start()
            log.info("serving", extra={"fields": {"listen": f"{host}:{port}", "pid": os.getpid()}})
            await stop.wait()
    finally:
        # Runs the app's on_shutdown hooks, finishes requests in flight (at most 8 s),
        # then its cleanup contexts.
        await runner.cleanup()
        # Closing the loop would restore the default actions (SIGTERM kills).
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        _ignore_stop_signals()


if __name__ == "__main__":
    sys.exit(main())
