"""The operator's walk through the command lines against a real hub process.

Two tenants, three nodes, a mesh reviewer and a tenant reviewer, all through
the installed console scripts `honeymesh-node` and `honeymesh-review`
(PROTOCOL.md section 12): keygen, enroll, publish, auto-approval by
corroboration, review (queue, show with local signature checks, claim,
approve, retract), pull in every format, verify, status; and errors that are
one sentence.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import HubFactory
from .remote import Admin, hub_env

NODE_BIN = str(Path(sys.executable).with_name("honeymesh-node"))
REVIEW_BIN = str(Path(sys.executable).with_name("honeymesh-review"))
CLI_TIMEOUT = 60.0


@dataclass
class Run:
    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()


async def cli(binary: str, args: list[str], env: dict[str, str], stdin: str | None = None) -> Run:
    proc = await asyncio.create_subprocess_exec(
        binary,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), CLI_TIMEOUT
    )
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def client_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a node or reviewer command: quick retries, no inherited hub."""
    env = hub_env(None, None, None)
    env.update(HONEYMESH_RETRY_BASE_DELAY="0.05", HONEYMESH_RETRY_MAX_DELAY="1")
    if home is not None:
        env["HONEYMESH_NODE_HOME"] = str(home)
    env.update(extra)
    return env


def assert_one_sentence(run: Run, prog: str) -> str:
    assert run.code != 0, run
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert len(lines) >= 1, run
    last = lines[-1]
    assert last.startswith(f"{prog}: ") and last.endswith((".", ")")), run.err
    return last


async def new_tenant(
    admin: Admin, base: str, name: str, limits: dict[str, int] | None = None
) -> str:
    body: dict[str, Any] = {"name": name, "plan": "pro"}
    if limits:
        body["limits"] = limits
    reply = await admin.call(base, "POST", "/v1/admin/tenants", body)
    assert reply.status == 201, reply.body
    return str(reply.body["tenant_id"])


async def enrollment_token(admin: Admin, base: str, tenant_id: str, uses: int = 1) -> str:
    reply = await admin.call(
        base,
        "POST",
        f"/v1/admin/tenants/{tenant_id}/enrollment-tokens",
        {"ttl_seconds": 3600, "max_uses": uses},
    )
    assert reply.status == 201, reply.body
    return str(reply.body["token"])


async def reviewer_token(admin: Admin, base: str, scope: str, name: str) -> str:
    reply = await admin.call(
        base, "POST", "/v1/admin/tokens", {"role": "reviewer", "scope": scope, "name": name}
    )
    assert reply.status == 201, reply.body
    return str(reply.body["token"])


async def enrolled_node(home: Path, base: str, token: str, name: str) -> str:
    """keygen + enroll through the CLI; the node id."""
    done = await cli(NODE_BIN, ["keygen"], client_env(home))
    assert done.code == 0, done.err
    done = await cli(
        NODE_BIN, ["enroll", "--hub", base, "--token", token, "--name", name], client_env(home)
    )
    assert done.code == 0, done.err
    return str(json.loads((home / "node.json").read_text())["node_id"])


def publish_args(ip: str, share: str = "mesh", confidence: int = 90) -> list[str]:
    return [
        "publish",
        "--ip",
        ip,
        "--scenario",
        "ssh/brute-force",
        "--confidence",
        str(confidence),
        "--share",
        share,
        "--service",
        "ssh",
        "--port",
        "22",
    ]


def status_of(run: Run) -> list[str]:
    """The status word of each output line of publish or flush."""
    return [line.split()[1] for line in run.lines()]


async def test_two_tenants_three_nodes_and_reviewers_through_the_clis(
    hub_process_factory: HubFactory, admin: Admin, tmp_path: Path
) -> None:
    hub = hub_process_factory()
    base = hub.base_url
    tenant_a = await new_tenant(admin, base, "alpha")
    tenant_b = await new_tenant(admin, base, "beta")
    token_a = await enrollment_token(admin, base, tenant_a, uses=2)
    token_b = await enrollment_token(admin, base, tenant_b)
    n1, n2, n3 = tmp_path / "n1", tmp_path / "n2", tmp_path / "n3"

    # keygen: 0600, and no overwrite without --force.
    await enrolled_node(n1, base, token_a, "a-1")
    assert stat.S_IMODE(os.stat(n1 / "node.key").st_mode) == 0o600
    again = await cli(NODE_BIN, ["keygen"], client_env(n1))
    assert "--force" in assert_one_sentence(again, "honeymesh-node")
    await enrolled_node(n2, base, token_a, "a-2")
    # The third enrolls with the token on stdin, out of the process list.
    assert (await cli(NODE_BIN, ["keygen"], client_env(n3))).code == 0
    done = await cli(
        NODE_BIN, ["enroll", "--hub", base, "--token-file", "-"], client_env(n3), stdin=token_b
    )
    assert done.code == 0, done.err
    # A spent token is one sentence.
    n4 = tmp_path / "n4"
    done = await cli(NODE_BIN, ["enroll", "--hub", base, "--token", token_b], client_env(n4))
    assert "forbidden" in assert_one_sentence(done, "honeymesh-node")

    # Corroboration: three nodes of two tenants, confidence >= 70 -> approved, origin auto.
    first = await cli(NODE_BIN, publish_args("203.0.113.10"), client_env(n1))
    assert first.code == 0, first.err
    assert status_of(first) == ["accepted"]
    assert "pending" in first.out
    for home in (n2, n3):
        done = await cli(NODE_BIN, publish_args("203.0.113.10"), client_env(home))
        assert status_of(done) == ["accepted"], done.out
    assert "approved" in done.out
    auto_id = done.out.split("candidate ")[1].split()[0]

    # A mesh candidate from one node waits for the mesh reviewer; a tenant one for alpha's.
    ndjson = "\n".join(
        [
            json.dumps(
                {
                    "indicator": {"type": "ip", "value": "203.0.113.20"},
                    "scenario": "redis/unauthenticated-config-set",
                    "share": "mesh",
                }
            ),
            json.dumps(
                {
                    "indicator": {"type": "cidr", "value": "198.51.100.0/24"},
                    "scenario": "scan/syn",
                    "share": "tenant",
                    "labels": {"site": "lab"},
                }
            ),
            "not json",
        ]
    )
    done = await cli(NODE_BIN, ["publish"], client_env(n1), stdin=ndjson)
    assert status_of(done) == ["accepted", "accepted", "invalid"], done.out
    assert done.code == 1  # the invalid line

    mesh_rev = client_env(
        HONEYMESH_HUB_URL=base,
        HONEYMESH_REVIEW_TOKEN=await reviewer_token(admin, base, "mesh", "mesh-rev"),
    )
    alpha_rev = client_env(
        HONEYMESH_HUB_URL=base,
        HONEYMESH_REVIEW_TOKEN=await reviewer_token(admin, base, tenant_a, "alpha-rev"),
    )
    queue = await cli(REVIEW_BIN, ["queue", "--json"], mesh_rev)
    assert queue.code == 0, queue.err
    pending = {c["indicator"]["value"]: c for c in json.loads(queue.out)["candidates"]}
    assert set(pending) == {"203.0.113.20"}
    mesh_id = pending["203.0.113.20"]["id"]
    table = await cli(REVIEW_BIN, ["queue"], mesh_rev)
    assert "203.0.113.20" in table.out and "INDICATOR" in table.out

    show = await cli(REVIEW_BIN, ["show", mesh_id], mesh_rev)
    assert show.code == 0, show.err
    assert "signature ok" in show.out and "BAD" not in show.out
    claim = await cli(REVIEW_BIN, ["claim", mesh_id], mesh_rev)
    assert claim.code == 0, claim.err
    # A tenant reviewer cannot touch a mesh candidate: refused, not_found.
    done = await cli(REVIEW_BIN, ["approve", mesh_id, "--reason", "x"], alpha_rev)
    assert "refused" in done.out
    assert_one_sentence(done, "honeymesh-review")
    done = await cli(
        REVIEW_BIN, ["approve", mesh_id, "--reason", "three honeypots", "--ttl", "3600"], mesh_rev
    )
    assert done.code == 0, done.out + done.err
    assert done.out.split()[1:] == ["applied", "approved"]

    tq = await cli(REVIEW_BIN, ["queue", "--json"], alpha_rev)
    tenant_pending = json.loads(tq.out)["candidates"]
    assert [c["indicator"]["value"] for c in tenant_pending] == ["198.51.100.0/24"]
    done = await cli(
        REVIEW_BIN, ["approve", tenant_pending[0]["id"], "--reason", "lab scan"], alpha_rev
    )
    assert done.code == 0, done.err

    # Pull: alpha's nodes see the mesh decisions and alpha's own; beta's only the mesh ones.
    pulled = await cli(NODE_BIN, ["pull", "--format", "plain"], client_env(n2))
    assert pulled.code == 0, pulled.err
    assert pulled.lines() == ["198.51.100.0/24", "203.0.113.10", "203.0.113.20"]
    pulled = await cli(NODE_BIN, ["pull", "--format", "plain"], client_env(n3))
    assert pulled.lines() == ["203.0.113.10", "203.0.113.20"]
    for fmt in ("json", "csv", "nft", "ipset"):
        out_file = tmp_path / f"out.{fmt}"
        done = await cli(
            NODE_BIN, ["pull", "--format", fmt, "--output", str(out_file)], client_env(n1)
        )
        assert done.code == 0, done.err
        assert "203.0.113.20" in out_file.read_text()
    decisions = json.loads((tmp_path / "out.json").read_text())["decisions"]
    assert {d["id"] for d in decisions} >= {auto_id, mesh_id}

    # verify: every publisher of the auto decision, from a node of the other tenant.
    verified = await cli(NODE_BIN, ["verify", auto_id], client_env(n3))
    assert verified.code == 0, verified.err
    assert verified.out.count("signature ok") == 3
    missing = await cli(
        NODE_BIN, ["verify", "00000000-0000-4000-8000-000000000000"], client_env(n3)
    )
    assert "not_found" in assert_one_sentence(missing, "honeymesh-node")

    status = await cli(NODE_BIN, ["status"], client_env(n1))
    assert status.code == 0, status.err
    assert "plan pro" in status.out and "publish_per_minute=600" in status.out
    assert "0 waiting" in status.out

    # Retract: the next pull (a delta) drops it.
    done = await cli(REVIEW_BIN, ["retract", mesh_id, "--reason", "false positive"], mesh_rev)
    assert done.code == 0, done.err
    pulled = await cli(NODE_BIN, ["pull", "--format", "plain"], client_env(n3))
    assert pulled.lines() == ["203.0.113.10"]
    assert "snapshot" not in pulled.err


async def test_errors_are_one_sentence_and_help_has_examples(tmp_path: Path) -> None:
    env = client_env(tmp_path / "nowhere")
    for args in (["status"], ["publish", "--ip", "203.0.113.1", "--scenario", "a/b"], ["pull"]):
        done = await cli(NODE_BIN, args, env)
        assert "not enrolled" in assert_one_sentence(done, "honeymesh-node")
    done = await cli(NODE_BIN, ["pull", "--format", "xml"], env)
    assert done.code == 2 and len(done.err.strip().splitlines()) == 1
    done = await cli(REVIEW_BIN, ["queue"], client_env())
    assert "--hub" in assert_one_sentence(done, "honeymesh-review")
    done = await cli(
        REVIEW_BIN, ["--hub", "http://127.0.0.1:9", "--token", "hmr_x", "queue"], client_env()
    )
    assert "cannot reach the hub" in assert_one_sentence(done, "honeymesh-review")
    debug = await cli(
        REVIEW_BIN,
        ["--debug", "--hub", "http://127.0.0.1:9", "--token", "hmr_x", "queue"],
        client_env(),
    )
    assert "Traceback" in debug.err
    for binary, sub in ((NODE_BIN, "publish"), (NODE_BIN, "watch"), (REVIEW_BIN, "approve")):
        done = await cli(binary, [sub, "--help"], client_env())
        assert done.code == 0 and "example" in done.out
