"""CrowdSec's own bouncers, as Debian ships them, against a real hub (PROTOCOL.md 13.1).

Debian's `crowdsec-firewall-bouncer` runs in ipset mode inside a network namespace
made by the test (the host's firewall is never touched) and reaches the hub outside
through a socat relay over a Unix socket: an approved address and an approved CIDR
appear in its set, an extension grows the entry's timeout, and a retraction removes
them. `crowdsec-custom-bouncer` runs a script that logs its arguments: an approval is
an `add` line and a retraction a `del` line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import devservices  # scripts/, on sys.path through tests/conftest.py
from honeymesh_client.protocol.dsse import build_envelope
from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request
from tests.e2e.remote import HubProcess, create_admin_token, hub_env, start_hub

FIREWALL_BOUNCER = "/usr/bin/crowdsec-firewall-bouncer"
CUSTOM_BOUNCER = "/usr/bin/crowdsec-custom-bouncer"
TIMEOUT = 60.0
EVENT_TIMEOUT = 30.0  # the bouncers poll every second


def _require(*programs: str) -> None:
    # make test requires the packages (deploy/debian-packages.txt): fail, never skip.
    for program in programs:
        assert shutil.which(program), f"{program} is missing: see deploy/debian-packages.txt"


def _wait_for(what: str, condition: Callable[[], bool], logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen:\n{logs()}"
        time.sleep(0.1)


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-4000:]
    except OSError:
        return f"({path} absent)"


class Processes:
    """Processes the test started, each in its own group; all killed at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("HONEYMESH_")},
            )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.started):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError):  # anything left in its group
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()


# --------------------------------------------------------------------------- the hub


@pytest.fixture
def hub(services: Any, database_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[Any]:
    env = hub_env(database_url, services.redis_url, redis_prefix)
    process: HubProcess = start_hub(
        env, devservices.free_port(), tmp_path / "hub.log", tmp_path / "hub-tmp"
    )
    try:
        process.wait_ready()
        yield process, env
    finally:
        process.kill_all()


def _http(base: str, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers = {**headers, "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class World:
    """One tenant with a trusted node (whose signals approve at once) and a reader key."""

    def __init__(self, base: str, admin_token: str) -> None:
        self.base = base
        self.auth = {"Authorization": f"Bearer {admin_token}"}
        status, made = self.admin("POST", "/v1/admin/tenants", {"name": "cs", "plan": "pro"})
        assert status == 201, made
        self.tenant_id = made["tenant_id"]
        status, token = self.admin(
            "POST",
            f"/v1/admin/tenants/{self.tenant_id}/enrollment-tokens",
            {"ttl_seconds": 3600, "max_uses": 1},
        )
        assert status == 201, token
        self.key = NodeKey.generate()
        status, enrolled = self.signed(
            "POST",
            "/v1/nodes/enroll",
            {"token": token["token"], "public_key": self.key.public_b64, "name": "cs"},
        )
        assert status == 201, enrolled
        self.node_id = enrolled["node_id"]
        status, body = self.admin("PATCH", f"/v1/admin/nodes/{self.node_id}", {"trusted": True})
        assert status == 200, body
        status, reader = self.admin(
            "POST", f"/v1/admin/tenants/{self.tenant_id}/reader-keys", {"name": "bouncer"}
        )
        assert status == 201, reader
        self.reader_key: str = reader["key"]

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return _http(self.base, method, path, body, self.auth)

    def signed(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        headers = sign_request(self.key, method, path, "", data)
        return _http(self.base, method, path, body, headers)

    def approve(self, value: str, kind: str = "ip", ttl: int = 3600) -> str:
        """A decision approved by the trusted node's signal (again: an extension)."""
        payload = {
            "v": 1,
            "id": str(uuid.uuid4()),
            "node_id": self.node_id,
            "observed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "indicator": {"type": kind, "value": value},
            "scenario": "ssh/brute-force",
            "action": "blocked",
            "mode": "enforce",
            "confidence": 95,
            "ttl_seconds": ttl,
            "share": "mesh",
        }
        envelope = build_envelope(self.key, json.dumps(payload).encode())
        status, reply = self.signed("POST", "/v1/signals", {"envelopes": [envelope]})
        assert status == 202, reply
        [result] = reply["results"]
        assert result["candidate_state"] == "approved", reply
        return str(result["candidate_id"])

    def retract(self, cidr: str) -> None:
        """An allowlist entry retracts every active decision it covers."""
        status, body = self.admin("POST", "/v1/admin/allowlist", {"cidr": cidr, "reason": "t"})
        assert status == 201, body


@pytest.fixture
def world(hub: Any) -> World:
    process, env = hub
    return World(process.base_url, create_admin_token(env))


# --------------------------------------------------------------------------- the namespace


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of this test's own, its loopback up; deleted afterwards."""
    _require("ip", "ipset", "socat")
    name = f"hmtest-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    try:
        _in(name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _in(netns: str, *args: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def _relay(processes: Processes, netns: str, hub_port: int, tmp_path: Path) -> int:
    """Inside `netns`, 127.0.0.1:<port> reaches the hub outside; that port."""
    sock = tmp_path / "hub.sock"
    processes.start(
        ["socat", f"UNIX-LISTEN:{sock},fork", f"TCP:127.0.0.1:{hub_port}"],
        tmp_path / "socat-out.log",
    )
    port = devservices.free_port()
    processes.start(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
            f"UNIX-CONNECT:{sock}",
        ],
        tmp_path / "socat-in.log",
    )

    def listening() -> bool:
        done = subprocess.run(
            ["ip", "netns", "exec", netns, "ss", "-Hltn", f"sport = :{port}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return bool(done.stdout.strip()) and sock.exists()

    _wait_for("the relay", listening, lambda: _tail(tmp_path / "socat-in.log"))
    return port


def _ipset_entries(netns: str, name: str) -> dict[str, int]:
    """The members of set `name` in `netns`: value -> its timeout in seconds."""
    listing = _in(netns, "ipset", "list", name)
    members = listing.partition("Members:\n")[2]
    found: dict[str, int] = {}
    for line in members.splitlines():
        match = re.match(r"^(\S+) timeout (\d+)", line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def test_the_firewall_bouncer_fills_an_ipset_in_a_namespace(
    hub: Any, world: World, netns: str, processes: Processes, tmp_path: Path
) -> None:
    _require(FIREWALL_BOUNCER)
    process, _ = hub
    port = _relay(processes, netns, process.port, tmp_path)
    _in(netns, "ipset", "create", "blacklists_ipv4", "hash:net", "timeout", "0")
    _in(netns, "ipset", "create", "blacklists_ipv6", "hash:net", "family", "inet6", "timeout", "0")
    logs = tmp_path / "bouncer-logs"
    logs.mkdir()
    config = tmp_path / "crowdsec-firewall-bouncer.yaml"
    config.write_text(
        "mode: ipset\n"
        f"pid_dir: {tmp_path}/\n"
        "update_frequency: 1s\n"
        "daemonize: false\n"
        "log_mode: file\n"
        f"log_dir: {logs}/\n"
        "log_level: debug\n"
        "log_compression: false\n"
        f"api_url: http://127.0.0.1:{port}/crowdsec/\n"
        f"api_key: {world.reader_key}\n"
        "insecure_skip_verify: false\n"
        "disable_ipv6: false\n"
        "deny_action: DROP\n"
        "deny_log: false\n"
        "supported_decisions_types:\n  - ban\n"
        "blacklists_ipv4: blacklists_ipv4\n"
        "blacklists_ipv6: blacklists_ipv6\n"
        "ipset_type: nethash\n"
        "prometheus:\n  enabled: false\n"
    )
    bouncer_log = logs / "crowdsec-firewall-bouncer.log"

    def output() -> str:
        return _tail(bouncer_log) + "\n" + _tail(tmp_path / "bouncer-out.log")

    # Something to enforce from the first poll on; then the bouncer starts.
    world.approve("198.51.100.7", ttl=600)
    bouncer = processes.start(
        ["ip", "netns", "exec", netns, FIREWALL_BOUNCER, "-c", str(config)],
        tmp_path / "bouncer-out.log",
    )

    def entries() -> dict[str, int]:
        assert bouncer.poll() is None, f"the bouncer exited ({bouncer.returncode}):\n{output()}"
        return _ipset_entries(netns, "blacklists_ipv4")

    _wait_for("the startup address", lambda: "198.51.100.7" in entries(), output)
    assert 0 < entries()["198.51.100.7"] <= 600

    world.approve("203.0.113.0/24", kind="cidr", ttl=600)
    _wait_for("the approved range", lambda: "203.0.113.0/24" in entries(), output)
    assert 0 < entries()["203.0.113.0/24"] <= 600
    world.approve("2001:db8::7", ttl=600)
    _wait_for(
        "the IPv6 address",
        lambda: "2001:db8::7" in _ipset_entries(netns, "blacklists_ipv6"),
        output,
    )

    # Extension: published again with a longer TTL, the entry's timeout grows.
    world.approve("198.51.100.7", ttl=7200)
    _wait_for("the extension", lambda: entries().get("198.51.100.7", 0) > 600, output)
    assert entries()["198.51.100.7"] <= 7200

    # Retraction: both leave the set, and nothing else is in it.
    world.retract("198.51.100.7")
    world.retract("203.0.113.0/24")
    _wait_for("the retractions", lambda: entries() == {}, output)
    assert "2001:db8::7" in _ipset_entries(netns, "blacklists_ipv6")


def test_the_custom_bouncer_runs_its_script_for_approvals_and_retractions(
    hub: Any, world: World, processes: Processes, tmp_path: Path
) -> None:
    _require(CUSTOM_BOUNCER)
    process, _ = hub
    calls = tmp_path / "calls.log"
    script = tmp_path / "record.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    script.chmod(0o755)
    logs = tmp_path / "bouncer-logs"
    logs.mkdir()
    config = tmp_path / "crowdsec-custom-bouncer.yaml"
    config.write_text(
        f"bin_path: {script}\n"
        "feed_via_stdin: false\n"
        "total_retries: 0\n"
        f"piddir: {tmp_path}/\n"
        "update_frequency: 1s\n"
        "cache_retention_duration: 10s\n"
        "daemonize: false\n"
        "log_mode: file\n"
        f"log_dir: {logs}/\n"
        "log_level: debug\n"
        "log_compression: false\n"
        f"api_url: {process.base_url}/crowdsec/\n"
        f"api_key: {world.reader_key}\n"
        "prometheus:\n  enabled: false\n"
    )
    bouncer = processes.start([CUSTOM_BOUNCER, "-c", str(config)], tmp_path / "bouncer-out.log")

    def output() -> str:
        return (
            _tail(logs / "crowdsec-custom-bouncer.log")
            + "\n"
            + _tail(tmp_path / "bouncer-out.log")
            + "\ncalls:\n"
            + _tail(calls)
        )

    def lines() -> list[list[str]]:
        assert bouncer.poll() is None, f"the bouncer exited ({bouncer.returncode}):\n{output()}"
        try:
            return [line.split() for line in calls.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def added(value: str) -> list[list[str]]:
        return [w for w in lines() if w[:2] == ["add", value]]

    def deleted(value: str) -> list[list[str]]:
        return [w for w in lines() if w[:2] == ["del", value]]

    world.approve("198.51.100.9", ttl=600)
    world.approve("203.0.113.64/26", kind="cidr", ttl=900)
    _wait_for("the add of the address", lambda: bool(added("198.51.100.9")), output)
    _wait_for("the add of the range", lambda: bool(added("203.0.113.64/26")), output)
    # add <value> <duration in seconds> <reason> <the decision as JSON>
    [ip_add] = added("198.51.100.9")
    assert 0 < int(ip_add[2]) <= 600, ip_add
    [range_add] = added("203.0.113.64/26")
    assert 600 < int(range_add[2]) <= 900, range_add
    assert deleted("198.51.100.9") == [] and deleted("203.0.113.64/26") == []

    world.retract("198.51.100.9")
    _wait_for("the del of the address", lambda: bool(deleted("198.51.100.9")), output)
    assert deleted("203.0.113.64/26") == []
    world.retract("203.0.113.0/24")
    _wait_for("the del of the range", lambda: bool(deleted("203.0.113.64/26")), output)
