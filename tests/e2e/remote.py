"""Helpers for end-to-end tests: real `honeymesh-hub` processes and clients over TCP.

Nothing here reaches into the hub's code: processes are started from the installed
console script, admin tokens come from its CLI, and nodes sign with the client's
protocol module and talk to the hub over aiohttp with the URL sent unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request

HUB_BIN = str(Path(sys.executable).with_name("honeymesh-hub"))
READY_TIMEOUT = 60.0
CLI_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def hub_env(
    database_url: str | None, redis_url: str | None, redis_prefix: str | None, **extra: str
) -> dict[str, str]:
    """The caller's environment without any HONEYMESH_* setting, plus the given ones."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HONEYMESH_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONUNBUFFERED"] = "1"
    if database_url is not None:
        env["HONEYMESH_DATABASE_URL"] = database_url
    if redis_url is not None:
        env["HONEYMESH_REDIS_URL"] = redis_url
    if redis_prefix is not None:
        env["HONEYMESH_REDIS_PREFIX"] = redis_prefix
    env.update(extra)
    return env


def run_cli(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HUB_BIN, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def create_admin_token(env: Mapping[str, str], name: str = "t") -> str:
    done = run_cli(["admin", "create-token", "--role", "admin", "--name", name], env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("hma_"), done.stdout
    return token


# --------------------------------------------------------------------------- processes


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class HubProcess:
    """One `honeymesh-hub serve` process (and its workers), in its own process group."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    workers: int
    tmpdir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll /readyz until it answers 200 (set-up, not an assertion on timing)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            # Waiting on the process doubles as the poll interval and notices an early exit.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.1)
            if self.proc.returncode is not None:
                raise RuntimeError(
                    f"hub exited with {self.proc.returncode} while starting:\n{self.output()}"
                )
        raise RuntimeError(f"hub not ready within {timeout:.0f} s ({last}):\n{self.output()}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """The exit status, or None if still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self) -> None:
        """Teardown: SIGTERM, then SIGKILL the whole group (workers included)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(STOP_TIMEOUT) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Workers of a parent that died must not outlive the test.
        if group_alive(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def start_hub(
    env: Mapping[str, str], port: int, log_path: Path, tmpdir: Path, workers: int = 1
) -> HubProcess:
    tmpdir.mkdir(parents=True, exist_ok=True)
    run_env = dict(env)
    # The metrics directory of `--workers N` is made under TMPDIR: tests look inside it.
    run_env["TMPDIR"] = str(tmpdir)
    log = log_path.open("wb")
    try:
        proc = subprocess.Popen(
            [HUB_BIN, "serve", "--listen", f"127.0.0.1:{port}", "--workers", str(workers)],
            env=run_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    return HubProcess(proc=proc, port=port, log_path=log_path, workers=workers, tmpdir=tmpdir)


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any
    raw: bytes

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
) -> Reply:
    """Send exactly this URL (no re-quoting: the path is part of the signature)."""
    async with session.request(
        method, URL(url, encoded=True), headers=dict(headers or {}), data=data
    ) as resp:
        raw = await resp.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return Reply(resp.status, resp.headers, body, raw)


@dataclass
class Admin:
    session: aiohttp.ClientSession
    token: str

    async def call(self, base: str, method: str, path: str, body: Any = None) -> Reply:
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return await send(self.session, method, base + path, headers, data)

    async def enroll_node(self, base: str, plan: str = "pro", name: str = "node") -> Node:
        """A new tenant, an enrollment token, and a node enrolled with a fresh key."""
        reply = await self.call(base, "POST", "/v1/admin/tenants", {"name": "e2e", "plan": plan})
        assert reply.status == 201, reply.body
        tenant_id = reply.body["tenant_id"]
        reply = await self.call(
            base,
            "POST",
            f"/v1/admin/tenants/{tenant_id}/enrollment-tokens",
            {"ttl_seconds": 3600, "max_uses": 1},
        )
        assert reply.status == 201, reply.body
        node = Node(self.session, NodeKey.generate())
        enrolled = await node.request(
            base,
            "POST",
            "/v1/nodes/enroll",
            {"token": reply.body["token"], "public_key": node.key.public_b64, "name": name},
        )
        assert enrolled.status == 201, enrolled.body
        node.node_id = enrolled.body["node_id"]
        node.tenant_id = enrolled.body["tenant_id"]
        return node


@dataclass
class SignedRequest:
    method: str
    target: str
    headers: dict[str, str]
    data: bytes | None


@dataclass
class Node:
    session: aiohttp.ClientSession
    key: NodeKey
    node_id: str = ""
    tenant_id: str = ""

    def sign(self, method: str, target: str, body: Any = None) -> SignedRequest:
        data = json.dumps(body).encode() if body is not None else None
        path, _, query = target.partition("?")
        headers = sign_request(self.key, method, path, query, data)
        if data is not None:
            headers["Content-Type"] = "application/json"
        return SignedRequest(method, target, headers, data)

    async def send(self, base: str, signed: SignedRequest) -> Reply:
        return await send(
            self.session, signed.method, base + signed.target, signed.headers, signed.data
        )

    async def request(self, base: str, method: str, target: str, body: Any = None) -> Reply:
        return await self.send(base, self.sign(method, target, body))
