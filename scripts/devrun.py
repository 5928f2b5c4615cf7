"""`make run`: a working hub with a demo tenant, from nothing, until Ctrl-C.

Starts PostgreSQL and Redis under `.data/` (unless HONEYMESH_DATABASE_URL /
HONEYMESH_REDIS_URL say where they are), migrates, serves the hub on
HONEYMESH_LISTEN (default 127.0.0.1:8700), makes the demo tenant and its
tokens through the admin API, prints how to use them, and on Ctrl-C or
SIGTERM stops the hub first, then Redis, then PostgreSQL.

HTTP is stdlib urllib on purpose: this script is the first thing a newcomer
runs and should not depend on the hub's own client code working.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import devservices
from devservices import (
    DATA_DIR,
    DevServiceError,
    PostgresServer,
    RedisServer,
    Stop,
    install_stop_handlers,
)

DEMO_FILE = DATA_DIR / "demo.json"
DEMO_TENANT_NAME = "demo"
DEMO_PLAN = "pro"
READY_TIMEOUT = 60.0
HUB_STOP_TIMEOUT = 15.0


class RunError(Exception):
    """A failure reported as one sentence (plus the hub's own output)."""


def hub_command() -> str:
    beside = Path(sys.executable).parent / "honeymesh-hub"
    if beside.exists():
        return str(beside)
    found = shutil.which("honeymesh-hub")
    if not found:
        raise RunError("honeymesh-hub is not installed; run `make venv` first.")
    return found


def check_listen_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise RunError(
                f"{host}:{port} is already in use; stop whatever listens there or set "
                "HONEYMESH_LISTEN=127.0.0.1:PORT."
            ) from None


# --------------------------------------------------------------------------- HTTP


def http(
    method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def expect(status: int, payload: Any, wanted: int, what: str) -> dict[str, Any]:
    if status != wanted or not isinstance(payload, dict):
        raise RunError(f"{what} failed with HTTP {status}: {payload}")
    return payload


def wait_ready(hub: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise RunError(f"The hub exited with status {hub.returncode} while starting.")
        try:
            status, payload = http("GET", f"{base}/readyz")
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200:
                return
            last = f"HTTP {status}: {payload}"
        time.sleep(0.2)
    raise RunError(f"The hub was not ready within {READY_TIMEOUT:.0f} s ({last}).")


# --------------------------------------------------------------------------- demo data


def load_demo() -> dict[str, Any]:
    try:
        data = json.loads(DEMO_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_demo(data: dict[str, Any]) -> None:
    DEMO_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(DEMO_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(data, fh, indent=2)
        fh.write("\n")


def demo_tenant(base: str, admin: str) -> str:
    """The remembered demo tenant if the hub still has it, else a new one."""
    demo = load_demo()
    tenant_id = demo.get("tenant_id")
    if isinstance(tenant_id, str) and tenant_id:
        status, payload = http("GET", f"{base}/v1/admin/tenants/{tenant_id}", admin)
        if status == 200:
            return tenant_id
        if status != 404:
            raise RunError(f"Looking up the demo tenant failed with HTTP {status}: {payload}")
    status, payload = http(
        "POST", f"{base}/v1/admin/tenants", admin, {"name": DEMO_TENANT_NAME, "plan": DEMO_PLAN}
    )
    tenant_id = str(expect(status, payload, 201, "Creating the demo tenant")["tenant_id"])
    save_demo({"tenant_id": tenant_id})
    return tenant_id


def print_banner(base: str, tenant_id: str, admin: str, enroll: str, reviewer: str) -> None:
    print(
        f"""
HoneyMesh hub is running at {base}   (Ctrl-C stops it and its servers)

  demo tenant      {tenant_id}
  ADMIN token      {admin}
  REVIEWER token   {reviewer}
  ENROLL token     {enroll}   (7 days, 10 uses)
  review console   {base}/console/   (log in with the REVIEWER or ADMIN token)

Try it (paste into another shell):

  export ADMIN='{admin}' REVIEWER='{reviewer}' ENROLL='{enroll}'
  curl -s {base}/v1/hub
  curl -s -H "Authorization: Bearer $ADMIN" {base}/v1/admin/tenants/{tenant_id}
  curl -s -H "Authorization: Bearer $REVIEWER" "{base}/v1/review/candidates?state=pending"

Enroll a node (state in ~/.honeymesh, or set HONEYMESH_NODE_HOME):

  .venv/bin/honeymesh-node keygen
  .venv/bin/honeymesh-node enroll --hub {base} --token "$ENROLL"
""",
        flush=True,
    )


# --------------------------------------------------------------------------- main


def stop_hub(hub: subprocess.Popen[bytes] | None) -> None:
    if hub is None or hub.poll() is not None:
        return
    hub.send_signal(signal.SIGTERM)
    try:
        hub.wait(timeout=HUB_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print("The hub did not stop within 15 s; killing it.", file=sys.stderr)
        hub.kill()
        hub.wait()


def run() -> int:
    pg: PostgresServer | None = None
    redis: RedisServer | None = None
    hub: subprocess.Popen[bytes] | None = None
    install_stop_handlers()
    try:
        env = dict(os.environ)
        listen = env.get("HONEYMESH_LISTEN", "").strip() or "127.0.0.1:8700"
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise RunError(f"HONEYMESH_LISTEN must be HOST:PORT, not {listen!r}.")
        check_listen_free(host, int(port))
        connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]")  # noqa: S104
        base = f"http://{connect_host}:{port}"

        if not env.get("HONEYMESH_DATABASE_URL", "").strip():
            pg = devservices.dev_postgres()
            print(f"Starting PostgreSQL in {pg.datadir} ...", file=sys.stderr, flush=True)
            pg.start()
            env["HONEYMESH_DATABASE_URL"] = pg.ensure_database("honeymesh")
        if not env.get("HONEYMESH_REDIS_URL", "").strip():
            redis = devservices.dev_redis()
            print(f"Starting Redis in {redis.directory} ...", file=sys.stderr, flush=True)
            redis.start()
            env["HONEYMESH_REDIS_URL"] = redis.url
        env["HONEYMESH_LISTEN"] = listen

        hub_bin = hub_command()
        print("Migrating ...", file=sys.stderr, flush=True)
        if subprocess.run([hub_bin, "migrate"], env=env, check=False).returncode != 0:
            raise RunError("`honeymesh-hub migrate` failed (its message is above).")

        print(f"Starting the hub on {listen} ...", file=sys.stderr, flush=True)
        hub = subprocess.Popen(
            [hub_bin, "serve", "--listen", listen],
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop things in order
            preexec_fn=devservices._die_with_parent(signal.SIGTERM),
        )
        wait_ready(hub, base)

        made = subprocess.run(
            [hub_bin, "admin", "create-token", "--role", "admin", "--name", "demo-admin"],
            env=env,
            stdout=subprocess.PIPE,
            check=False,
        )
        admin = made.stdout.decode().strip()
        if made.returncode != 0 or not admin:
            raise RunError("`honeymesh-hub admin create-token` failed (its message is above).")

        tenant_id = demo_tenant(base, admin)
        status, payload = http(
            "POST",
            f"{base}/v1/admin/tenants/{tenant_id}/enrollment-tokens",
            admin,
            {"ttl_seconds": 7 * 24 * 3600, "max_uses": 10},
        )
        enroll = str(expect(status, payload, 201, "Creating the enrollment token")["token"])
        status, payload = http(
            "POST",
            f"{base}/v1/admin/tokens",
            admin,
            {"role": "reviewer", "scope": "mesh", "name": "demo-reviewer"},
        )
        reviewer = str(expect(status, payload, 201, "Creating the reviewer token")["token"])

        print_banner(base, tenant_id, admin, enroll, reviewer)
        while hub.poll() is None:
            time.sleep(0.5)
        print(f"The hub exited with status {hub.returncode}.", file=sys.stderr)
        return 1
    except Stop:
        print("\nStopping ...", file=sys.stderr, flush=True)
        return 0
    except (RunError, DevServiceError) as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the orderly stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_hub(hub)
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(run())
