"""A real HAProxy (Debian's `haproxy`) in front of hub processes, on loopback, for the
scale-out tests and benchmark.

It balances round-robin, health-checks `/readyz`, drops any `X-Forwarded-For` a
client sends and adds the real peer, as deploy/haproxy.cfg does in production (there
with TLS; plain HTTP here). It runs in the foreground as a child of its caller and is
stopped by it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

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

frontend front
    bind 127.0.0.1:{port}
    http-request del-header X-Forwarded-For
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
    def __init__(self, directory: Path, port: int, hub_ports: Sequence[int]) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise RuntimeError("haproxy is missing: install the Debian package haproxy")
        servers = "\n".join(
            f"    server hub{i} 127.0.0.1:{p} check" for i, p in enumerate(hub_ports)
        )
        self.port = port
        self.config = directory / "haproxy.cfg"
        self.config.write_text(CONFIG.format(port=port, servers=servers))
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
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
