"""A real HAProxy (Debian's `haproxy`) in front of hub processes, on loopback, for the
scale-out tests and benchmark.

It balances round-robin, health-checks `/readyz`, appends the real peer to
`X-Forwarded-For` and, with no replica ready, answers problem+json 503 with
Retry-After, as deploy/haproxy.cfg does in production (there with TLS, and dropping
what a client sent in X-Forwarded-For first; here the client's own entries are kept,
so the tests show the hub itself takes only the right-most one). It runs in the
foreground as a child of its caller and is stopped by it. `Proxy(..., config=TEXT)`
runs any other configuration (tests/e2e/test_scaleout.py runs deploy/haproxy.cfg).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# With no replica ready, the proxy answers as a hub without its database would.
UNAVAILABLE = (
    "http-error status 503 content-type application/problem+json string '{}' hdr Retry-After 5"
).format(
    json.dumps(
        {
            "type": "urn:honeymesh:problem:service_unavailable",
            "title": "Service unavailable",
            "status": 503,
            "code": "service_unavailable",
            "detail": "No hub replica is ready; retry shortly.",
        },
        separators=(",", ":"),
    )
)

CONFIG = """
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 75s
    timeout server 75s
    option http-server-close
    retries 2
    option redispatch
    {unavailable}

frontend front
    bind 127.0.0.1:{port}
    option forwardfor
    default_backend hubs

backend hubs
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fall 2 rise 1
{servers}
"""


class Proxy:
    def __init__(
        self,
        directory: Path,
        port: int,
        hub_ports: Sequence[int],
        *,
        config: str | None = None,
        scheme: str = "http",
    ) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise RuntimeError("haproxy is missing: install the Debian package haproxy")
        servers = "\n".join(
            f"    server hub{i} 127.0.0.1:{p} check" for i, p in enumerate(hub_ports)
        )
        self.port = port
        self.scheme = scheme
        self.config = directory / "haproxy.cfg"
        self.config.write_text(
            config or CONFIG.format(port=port, servers=servers, unavailable=UNAVAILABLE)
        )
        self.log = directory / "haproxy.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, "-db", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
