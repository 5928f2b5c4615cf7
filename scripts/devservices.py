"""Private PostgreSQL and Redis servers for development and tests.

Why this exists: a newcomer has the server binaries but no configured
servers, and the test suite must not depend on whatever listens on 5432 or
6379.  So `make run` keeps a persistent cluster under `.data/`, and the test
fixtures start throwaway ones in a temp dir; both are plain child processes,
listening on 127.0.0.1 only, that die with their parent.

Standard library only: the `clean-data` target runs this with the system
python before any virtualenv exists.

    python scripts/devservices.py up          # .data servers until Ctrl-C
    python scripts/devservices.py throwaway   # temp servers until Ctrl-C
    python scripts/devservices.py stop        # stop leftovers under .data
    python scripts/devservices.py clean       # stop, then remove .data
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import glob
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".data"
PG_SUPERUSER = "honeymesh"
PG_SYSTEM_USER = "postgres"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

# Which Debian package ships each binary we run.
DEBIAN_PACKAGES = {
    "initdb": "postgresql",
    "postgres": "postgresql",
    "pg_ctl": "postgresql",
    "pg_isready": "postgresql",
    "redis-server": "redis-server",
}


class DevServiceError(RuntimeError):
    """A set-up failure whose message is one sentence for the user."""


class MissingBinary(DevServiceError):
    """A server binary is not installed."""


# --------------------------------------------------------------------------- binaries


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_binary(name: str, *, path: str | None = None, pg_bin_glob: str = PG_BIN_GLOB) -> Path:
    """Find `name` on PATH, else under the highest `/usr/lib/postgresql/*/bin`.

    Raises MissingBinary whose message names the Debian package to install.
    """
    found = shutil.which(name, path=path)
    if found:
        return Path(found)
    for bindir in sorted(glob.glob(pg_bin_glob), key=_version_key, reverse=True):
        candidate = Path(bindir) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    package = DEBIAN_PACKAGES.get(name, name)
    where = f"on PATH or under {pg_bin_glob}" if package == "postgresql" else "on PATH"
    raise MissingBinary(
        f"{name} was not found {where}; install the Debian package {package} "
        f"(apt-get install {package})."
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env_port(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DevServiceError(f"{name} must be a TCP port number, not {raw!r}.")
    return int(raw)


# --------------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int) -> Callable[[], None]:
    """A preexec_fn asking Linux to send `sig` to the child when we die.

    It runs after subprocess has switched user (a uid change clears the
    setting), so the server is stopped even when the caller is SIGKILLed.
    libc is loaded here, in the parent: dlopen after fork could deadlock.
    """
    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: atexit and signals still stop it
        prctl = None

    def preexec() -> None:
        if prctl is None:
            return
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: do not linger
            os.kill(os.getpid(), sig)

    return preexec


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _terminate(proc: subprocess.Popen[bytes] | None, pid: int, first: int, second: int) -> None:
    """Send `first`, wait, escalate to `second`, then SIGKILL."""
    for sig, timeout in ((first, STOP_TIMEOUT), (second, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return
            elif not _pid_alive(pid):
                return
            time.sleep(0.05)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- users


class _RunAs:
    """Who runs PostgreSQL: ourselves, or the postgres system user when root."""

    def __init__(self) -> None:
        self.uid: int | None = None
        self.gid: int | None = None
        if os.geteuid() != 0:
            return
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise DevServiceError(
                "PostgreSQL refuses to run as root and there is no postgres system user; "
                "install the Debian package postgresql (it creates one) or run as "
                "an ordinary user."
            ) from None
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    @property
    def switching(self) -> bool:
        return self.uid is not None

    def popen_kwargs(self) -> dict[str, object]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is None or self.gid is None:
            return
        os.chown(path, self.uid, self.gid)

    def can_reach(self, path: Path) -> bool:
        """Whether this user can traverse every ancestor of `path` (ACLs ignored)."""
        if self.uid is None:
            return True
        for ancestor in [*reversed(path.parents)]:
            st = ancestor.stat()
            if st.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif st.st_gid == self.gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                return False
        return True


# --------------------------------------------------------------------------- wire protocol


class PgError(DevServiceError):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"PostgreSQL error {sqlstate}: {message}")
        self.sqlstate = sqlstate


def _pg_recv(sock: socket.socket) -> tuple[bytes, bytes]:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return buf

    kind = exactly(1)
    (length,) = struct.unpack("!i", exactly(4))
    return kind, exactly(length - 4)


def _pg_error(body: bytes) -> PgError:
    fields = {f[:1]: f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
    return PgError(fields.get(b"C", "?????"), fields.get(b"M", "unknown error"))


@contextlib.contextmanager
def _pg_session(host: str, port: int, user: str, database: str) -> Iterator[socket.socket]:
    """A trust-authenticated session speaking the frontend protocol v3."""
    with socket.create_connection((host, port), timeout=5) as sock:
        params = f"user\0{user}\0database\0{database}\0\0".encode()
        sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        while True:
            kind, body = _pg_recv(sock)
            if kind == b"E":
                raise _pg_error(body)
            if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise DevServiceError(f"PostgreSQL on port {port} asks {user} for a password.")
            if kind == b"Z":
                break
        try:
            yield sock
        finally:
            with contextlib.suppress(OSError):
                sock.sendall(b"X\0\0\0\4")


def _pg_execute(sock: socket.socket, sql: str) -> None:
    payload = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!i", 4 + len(payload)) + payload)
    error: PgError | None = None
    while True:
        kind, body = _pg_recv(sock)
        if kind == b"E":
            error = _pg_error(body)
        elif kind == b"Z":
            break
    if error is not None:
        raise error


# --------------------------------------------------------------------------- PostgreSQL


# A throwaway cluster lives in memory when the machine has room there: the suite makes
# and drops a database per test, and on a virtual disk those file copies cost 100-250 ms
# each, against about 40 ms in tmpfs (measured on the CI machine, 2026-12-08).
_SHM = Path("/dev/shm")
_SHM_MIN_FREE = 1 << 30


def scratch_parent() -> str | None:
    """Where a throwaway server's files go: /dev/shm if it is a writable directory with
    1 GiB free, else the temp directory's default (None)."""
    try:
        stats = os.statvfs(_SHM)
    except OSError:
        return None
    if not os.access(_SHM, os.W_OK | os.X_OK) or stats.f_bavail * stats.f_frsize < _SHM_MIN_FREE:
        return None
    return str(_SHM)


class PostgresServer:
    """One PostgreSQL cluster run as a child process on 127.0.0.1.

    `datadir=None` makes a throwaway cluster in a temp dir, removed on stop,
    with durability switched off for speed; a given `datadir` is persistent
    (initdb only when absent) and fully durable.
    """

    def __init__(
        self,
        datadir: Path | None = None,
        *,
        port: int | None = None,
        fast: bool | None = None,
    ) -> None:
        self._run_as = _RunAs()
        initdb = find_binary("initdb").resolve()  # before making anything to clean up
        self._initdb = initdb
        postgres = initdb.parent / "postgres"
        self._postgres = postgres if postgres.exists() else find_binary("postgres")
        self._tempdir: Path | None = None
        if datadir is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="honeymesh-pg-", dir=scratch_parent()))
            self._run_as.chown(self._tempdir)
            datadir = self._tempdir / "data"
        self.datadir = datadir
        self._fixed_port = port
        self.port = port or 0
        self.fast = self._tempdir is not None if fast is None else fast
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._sockdir: Path | None = None

    # -- lifecycle

    def _binary_major(self) -> str:
        out = subprocess.run(
            [str(self._postgres), "--version"], capture_output=True, text=True, check=True
        ).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        return match.group(1) if match else ""

    def init(self) -> None:
        """Run initdb unless the cluster already exists."""
        version_file = self.datadir / "PG_VERSION"
        if version_file.exists():
            made_by, running = version_file.read_text().strip(), self._binary_major()
            if running and made_by != running:
                raise DevServiceError(
                    f"The cluster in {self.datadir} was made by PostgreSQL {made_by} but the "
                    f"installed server is {running}; remove it with `make clean-data`."
                )
            return
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        if not self._run_as.can_reach(self.datadir.parent):
            raise DevServiceError(
                f"PostgreSQL runs as the {PG_SYSTEM_USER} user, which cannot reach "
                f"{self.datadir.parent}; make the path traversable or set "
                "HONEYMESH_DATABASE_URL."
            )
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise DevServiceError(
                f"{self.datadir} exists but holds no PostgreSQL cluster; "
                "remove it with `make clean-data`."
            )
        self.datadir.mkdir(mode=0o700, exist_ok=True)
        self._run_as.chown(self.datadir)
        cmd = [
            str(self._initdb),
            "-D",
            str(self.datadir),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if self.fast:
            cmd.append("--no-sync")
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=self.datadir,
            check=False,
            **self._run_as.popen_kwargs(),  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise DevServiceError(
                f"initdb failed for {self.datadir}:\n{result.stdout}{result.stderr}"
            )

    def _stop_leftover(self) -> None:
        """Stop a server still running on this datadir from a run that was killed."""
        pidfile = self.datadir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if pid != os.getpid() and _pid_alive(pid) and "postgres" in _cmdline(pid):
            _terminate(None, pid, signal.SIGINT, signal.SIGQUIT)

    def _socket_dir(self) -> Path:
        # A Unix socket path must stay under ~107 bytes: use the datadir if short.
        if len(str(self.datadir)) + len("/.s.PGSQL.65535") < 100:
            return self.datadir
        if self._sockdir is None:
            self._sockdir = Path(tempfile.mkdtemp(prefix="hm-pgsock-"))
            self._run_as.chown(self._sockdir)
        return self._sockdir

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.init()
        self._stop_leftover()
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port()
            try:
                self._spawn()
                self._wait_ready()
            except DevServiceError:
                log = _tail(self.datadir / "server.log")
                self._kill()
                if attempt + 1 < attempts and "could not bind" in log:
                    continue  # somebody took the free port meanwhile
                raise
            atexit.register(self.stop)
            return

    def _spawn(self) -> None:
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self._socket_dir()),
            "port": str(self.port),
        }
        if self.fast:  # throwaway clusters only: never for `make run`
            options |= {
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
            }
        cmd = [str(self._postgres), "-D", str(self.datadir)]
        for key, value in options.items():
            cmd += ["-c", f"{key}={value}"]
        logpath = self.datadir / "server.log"
        self._log = open(logpath, "ab")  # noqa: SIM115 - kept for the server's lifetime
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.datadir,
            start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGQUIT),
            **self._run_as.popen_kwargs(),  # type: ignore[call-overload]
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise DevServiceError(
                    f"PostgreSQL exited with status {self._proc.returncode} while starting; "
                    f"its log ({self.datadir / 'server.log'}) ends:\n"
                    + _tail(self.datadir / "server.log")
                )
            try:
                with _pg_session("127.0.0.1", self.port, PG_SUPERUSER, "postgres"):
                    return
            except PgError as exc:
                if exc.sqlstate != "57P03":  # cannot_connect_now: still starting
                    raise
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DevServiceError(
                    f"PostgreSQL did not accept connections within {START_TIMEOUT:.0f} s."
                )
            time.sleep(0.05)

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                _terminate(self._proc, self._proc.pid, signal.SIGINT, signal.SIGQUIT)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove a throwaway cluster. Idempotent."""
        self._kill()
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- use

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement with the stdlib (no driver needed for set-up)."""
        with _pg_session("127.0.0.1", self.port, PG_SUPERUSER, dbname) as sock:
            _pg_execute(sock, sql)

    def ensure_database(self, name: str) -> str:
        """Create database `name` unless it exists; return its DSN."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise DevServiceError(f"{name!r} is not a plain database name.")
        try:
            self.execute(f"CREATE DATABASE {name}")
        except PgError as exc:
            if exc.sqlstate != "42P04":  # duplicate_database
                raise
        return self.dsn(name)


# --------------------------------------------------------------------------- Redis


class RedisServer:
    """One redis-server child process on 127.0.0.1, without persistence."""

    def __init__(self, directory: Path | None = None, *, port: int | None = None) -> None:
        self._binary = find_binary("redis-server")  # before making anything to clean up
        self._tempdir: Path | None = None
        if directory is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="honeymesh-redis-"))
            directory = self._tempdir
        self.directory = directory
        self._fixed_port = port
        self.port = port or 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port()
            try:
                self._spawn()
                self._wait_ready()
            except DevServiceError:
                log = _tail(self.directory / "redis.log")
                self._kill()
                if attempt + 1 < attempts and "in use" in log:
                    continue
                raise
            atexit.register(self.stop)
            return

    def _stop_leftover(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if _pid_alive(pid) and "redis" in _cmdline(pid):
            _terminate(None, pid, signal.SIGTERM, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def _spawn(self) -> None:
        cmd = [
            str(self._binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        self._log = open(self.directory / "redis.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGTERM),
        )
        self.pidfile.write_text(f"{self._proc.pid}\n")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise DevServiceError(
                    f"redis-server exited with status {self._proc.returncode} while starting; "
                    "its log ends:\n" + _tail(self.directory / "redis.log")
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline:
                raise DevServiceError(
                    f"redis-server did not answer PING within {START_TIMEOUT:.0f} s."
                )
            time.sleep(0.05)

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                _terminate(self._proc, self._proc.pid, signal.SIGTERM, signal.SIGKILL)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        """SIGTERM, then remove a throwaway directory. Idempotent."""
        self._kill()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- .data (make run)


def _postgres_datadir(data_dir: Path) -> Path:
    """`.data/postgres`, or where it points when root's postgres user cannot reach it.

    Debian runs PostgreSQL as the postgres user; a checkout under /root is not
    traversable by it, so the cluster then lives in /var/tmp behind a symlink.
    """
    link = data_dir / "postgres"
    if link.is_symlink() or link.exists():
        return link.resolve()
    run_as = _RunAs()
    data_dir.mkdir(parents=True, exist_ok=True)
    if run_as.can_reach(link):
        return link
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    outside = Path("/var/tmp") / f"honeymesh-dev-{digest}"
    outside.mkdir(mode=0o755, exist_ok=True)
    outside.chmod(0o755)
    link.symlink_to(outside / "postgres")
    return outside / "postgres"


def dev_postgres(data_dir: Path = DATA_DIR) -> PostgresServer:
    """The persistent `make run` cluster; port HONEYMESH_DEV_PG_PORT or a free one."""
    return PostgresServer(
        _postgres_datadir(data_dir), port=_env_port("HONEYMESH_DEV_PG_PORT"), fast=False
    )


def dev_redis(data_dir: Path = DATA_DIR) -> RedisServer:
    """The `make run` Redis; port HONEYMESH_DEV_REDIS_PORT or a free one."""
    return RedisServer(data_dir / "redis", port=_env_port("HONEYMESH_DEV_REDIS_PORT"))


def stop_leftovers(data_dir: Path = DATA_DIR) -> None:
    """Stop servers a killed `make run` left behind (normally there are none)."""
    link = data_dir / "postgres"
    if link.exists():
        datadir = link.resolve()
        pidfile = datadir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            if _pid_alive(pid) and "postgres" in _cmdline(pid):
                _terminate(None, pid, signal.SIGINT, signal.SIGQUIT)
    pidfile = data_dir / "redis" / "redis.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().strip())
        if _pid_alive(pid) and "redis" in _cmdline(pid):
            _terminate(None, pid, signal.SIGTERM, signal.SIGKILL)


def remove_data(data_dir: Path = DATA_DIR) -> None:
    stop_leftovers(data_dir)
    link = data_dir / "postgres"
    if link.is_symlink():
        target = link.resolve()
        shutil.rmtree(
            target.parent if target.parent.name.startswith("honeymesh-dev-") else target,
            ignore_errors=True,
        )
    shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- CLI


class Stop(Exception):
    """Raised by the SIGINT/SIGTERM handler to unwind and stop the servers."""


def raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signum)


def install_stop_handlers() -> None:
    signal.signal(signal.SIGINT, raise_stop)
    signal.signal(signal.SIGTERM, raise_stop)
    signal.signal(signal.SIGHUP, raise_stop)


def _serve(
    make_pg: Callable[[], PostgresServer], make_redis: Callable[[], RedisServer], dbname: str
) -> int:
    install_stop_handlers()
    pg: PostgresServer | None = None
    redis: RedisServer | None = None
    try:
        pg = make_pg()
        pg.start()
        redis = make_redis()
        redis.start()
        dsn = pg.ensure_database(dbname)
        print(f"HONEYMESH_DATABASE_URL={dsn}")
        print(f"HONEYMESH_REDIS_URL={redis.url}")
        print("# PostgreSQL and Redis are running; Ctrl-C stops them.", file=sys.stderr)
        sys.stdout.flush()
        while pg.running and redis.running:
            time.sleep(0.5)
        print("A server exited unexpectedly.", file=sys.stderr)
        return 1
    except Stop:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="data dir (default .data)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the persistent .data servers until Ctrl-C")
    sub.add_parser("throwaway", help="run throwaway servers in a temp dir until Ctrl-C")
    sub.add_parser("stop", help="stop servers left running under .data")
    sub.add_parser("clean", help="stop, then remove the data dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return _serve(
                lambda: dev_postgres(args.data), lambda: dev_redis(args.data), "honeymesh"
            )
        if args.command == "throwaway":
            return _serve(PostgresServer, RedisServer, "honeymesh")
        if args.command == "stop":
            stop_leftovers(args.data)
        elif args.command == "clean":
            remove_data(args.data)
    except DevServiceError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
