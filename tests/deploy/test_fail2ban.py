"""deploy/fail2ban: the action is read by fail2ban's own config reader (Debian's
fail2ban package, whose modules run under the system python3), its actionban command
is rendered for an address as fail2ban-server would, and that exact command is run
against a real hub (PostgreSQL and Redis behind it): the signal is accepted and shows
in the review queue; with the hub stopped the command exits 0 and the signal waits
in the spool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import devservices  # scripts/, on sys.path through tests/conftest.py
from tests.e2e.remote import HubProcess, create_admin_token, hub_env, run_cli, start_hub

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "fail2ban"
RENDER = Path(__file__).with_name("fail2ban_render.py")
SYSTEM_PYTHON = "/usr/bin/python3"
FAIL2BAN_ETC = Path("/etc/fail2ban")
NODE_BIN = str(Path(sys.executable).with_name("honeymesh-node"))
REVIEW_BIN = str(Path(sys.executable).with_name("honeymesh-review"))
TIMEOUT = 60


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    """Debian's /etc/fail2ban with our action and the jail example installed as the
    docs say, plus an action.d/honeymesh.local pointing at this test's node home."""
    # make test requires the package (deploy/debian-packages.txt): fail, never skip.
    assert shutil.which("fail2ban-client") and (FAIL2BAN_ETC / "jail.conf").exists(), (
        "install Debian's fail2ban package (deploy/debian-packages.txt)"
    )
    conf = tmp_path / "fail2ban"
    shutil.copytree(FAIL2BAN_ETC, conf)
    shutil.copy(DEPLOY / "action.d" / "honeymesh.conf", conf / "action.d" / "honeymesh.conf")
    shutil.copy(DEPLOY / "jail.d" / "honeymesh.local.example", conf / "jail.d" / "honeymesh.local")
    (conf / "action.d" / "honeymesh.local").write_text(
        f"[Init]\nhome = {tmp_path / 'node'}\nhoneymesh_node = {NODE_BIN}\n"
    )
    return conf


def render(confdir: Path, ip: str) -> dict[str, Any]:
    done = subprocess.run(
        [SYSTEM_PYTHON, str(RENDER), str(confdir), "sshd", "honeymesh", ip],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        cwd=confdir,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_ban(command: str) -> subprocess.CompletedProcess[str]:
    """The rendered actionban, run the way fail2ban runs it: `/bin/sh -c`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONEYMESH_")}
    return subprocess.run(
        ["/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_fail2ban_reads_the_action_and_the_jail_example(confdir: Path) -> None:
    rendered = render(confdir, "203.0.113.7")
    # The usual local ban stays, and the ban is published beside it.
    assert rendered["actions"] == ["iptables-multiport", "honeymesh"]
    options = rendered["options"]
    assert options["norestored"] in (True, "1", "true")
    assert options["ttl"] == "3600"
    assert options["actionunban"] == options["actionstart"] == options["actionstop"] == ""
    cmd = rendered["actionban"]
    assert "--ip '203.0.113.7'" in cmd
    assert "--scenario 'ssh/brute-force'" in cmd and "--ttl '3600'" in cmd
    assert "<" not in cmd  # every tag was replaced


def test_default_scenario_is_the_jail_name_under_fail2ban(confdir: Path) -> None:
    (confdir / "jail.d" / "honeymesh.local").write_text(
        "[sshd]\nenabled = true\naction = honeymesh\n"
    )
    # With /bin/echo as the program, the command prints the arguments it would pass.
    local = confdir / "action.d" / "honeymesh.local"
    local.write_text(local.read_text().replace(NODE_BIN, "/bin/echo"))
    done = run_ban(render(confdir, "2001:db8::7")["actionban"])
    assert done.returncode == 0, done.stderr
    args = done.stdout.split()
    assert args[args.index("--scenario") + 1] == "fail2ban/sshd"
    assert args[args.index("--ip") + 1] == "2001:db8::7"
    assert "--service" not in args and "--port" not in args  # service_port is empty


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


def _admin(base: str, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the test's own hub over http
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def _node(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONEYMESH_")}
    return subprocess.run(
        [NODE_BIN, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_a_ban_reaches_the_hub_and_spools_while_it_is_away(
    hub: Any, confdir: Path, tmp_path: Path
) -> None:
    process, env = hub
    base = process.base_url
    admin_token = create_admin_token(env)
    tenant_id = _admin(base, admin_token, "/v1/admin/tenants", {"name": "f2b", "plan": "pro"})[
        "tenant_id"
    ]
    enrollment = _admin(
        base,
        admin_token,
        f"/v1/admin/tenants/{tenant_id}/enrollment-tokens",
        {"ttl_seconds": 3600, "max_uses": 1},
    )
    home = tmp_path / "node"
    done = _node(home, "enroll", "--hub", base, "--token", enrollment["token"], "--name", "f2b")
    assert done.returncode == 0, done.stderr

    # The hub is up: the exact command fail2ban would run publishes the ban.
    done = run_ban(render(confdir, "203.0.113.7")["actionban"])
    assert done.returncode == 0, done.stderr
    assert " accepted " in f" {done.stdout} ", done.stdout
    assert "203.0.113.7" in done.stdout

    review = create_reviewer_token(env, tenant_id)
    candidates: list[dict[str, Any]] = []
    for state in ("pending", "approved"):  # the hub's policy may approve it at once
        queue = subprocess.run(
            [REVIEW_BIN, "--hub", base, "--token", review, "queue", "--state", state, "--json"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("HONEYMESH_")},
        )
        assert queue.returncode == 0, queue.stderr
        candidates += json.loads(queue.stdout)["candidates"]
    assert any(
        c["indicator"]["value"] == "203.0.113.7" and "ssh/brute-force" in c["scenarios"]
        for c in candidates
    ), candidates

    # The hub is away: the ban (IPv6 this time) is kept in the spool and fail2ban
    # sees success.
    process.kill_all()
    done = run_ban(render(confdir, "2001:DB8::7")["actionban"])
    assert done.returncode == 0, done.stderr
    assert "spooled" in done.stdout, done.stdout
    spool = _node(home, "spool", "--json")
    assert spool.returncode == 0, spool.stderr
    waiting = json.loads(spool.stdout)["signals"]
    assert [s["summary"] for s in waiting if s["state"] == "waiting"] and any(
        "2001:db8::7" in s["summary"] for s in waiting
    ), waiting


def create_reviewer_token(env: dict[str, str], tenant_id: str) -> str:
    done = run_cli(
        ["admin", "create-token", "--role", "reviewer", "--scope", tenant_id, "--name", "r"], env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
