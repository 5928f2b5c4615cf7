"""The node loses nothing: the spool under a hub that is down, answers 503 or 429,
or a node process SIGKILLed mid-flush; and the feed resumes after a hub restart
and after `410 cursor_expired`, with `watch` riding through the restart.

Real hub processes on real PostgreSQL and Redis. The one fake is a network
failure: a TCP relay between the hub and PostgreSQL that can be cut, so the
hub itself answers 503 (PROTOCOL.md section 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import devservices  # scripts/, on sys.path through tests/conftest.py
from honeymesh_hub.store.feed import compact

from .conftest import HubFactory
from .remote import Admin, HubProcess, hub_env, start_hub
from .test_cli_walk import (
    NODE_BIN,
    REVIEW_BIN,
    cli,
    client_env,
    enrolled_node,
    enrollment_token,
    new_tenant,
    publish_args,
    reviewer_token,
    status_of,
)

EVENT_TIMEOUT = 20.0


async def until(predicate: object, within: float = EVENT_TIMEOUT, interval: float = 0.05) -> None:
    """Await a condition (a sync or async callable) becoming true; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(interval)


def closed_url() -> str:
    return f"http://127.0.0.1:{devservices.free_port()}"


async def count_signals(database_url: str, ids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT signal_uuid::text AS id, count(*) AS n FROM signals"
            " WHERE signal_uuid = any($1::uuid[]) GROUP BY signal_uuid",
            ids,
        )
    finally:
        await conn.close()
    return {r["id"]: r["n"] for r in rows}


def ndjson(n: int, share: str = "tenant") -> str:
    return "".join(
        json.dumps(
            {
                "id": str(uuid.uuid4()),
                "indicator": {"type": "ip", "value": f"203.0.113.{i % 250 + 1}"},
                "scenario": f"test/load-{i}",
                "share": share,
                "confidence": 10,
            }
        )
        + "\n"
        for i in range(n)
    )


def ids_of(text: str) -> list[str]:
    return [json.loads(line)["id"] for line in text.splitlines()]


async def test_hub_down_spools_and_flush_delivers_later(
    hub_process_factory: HubFactory, admin: Admin, tmp_path: Path, database_url: str
) -> None:
    hub = hub_process_factory()
    tenant = await new_tenant(admin, hub.base_url, "t")
    home = tmp_path / "n"
    await enrolled_node(
        home, hub.base_url, await enrollment_token(admin, hub.base_url, tenant), "n"
    )
    down = client_env(home, HONEYMESH_HUB_URL=closed_url())

    done = await cli(NODE_BIN, publish_args("203.0.113.50", share="tenant"), down)
    assert done.code == 0, done.err
    assert status_of(done) == ["spooled"] and "cannot reach the hub" in done.out
    assert "flush" in done.err
    sid = done.out.split()[0]
    listing = await cli(NODE_BIN, ["spool"], down)
    assert sid in listing.out and "waiting" in listing.out and "hub unreachable" in listing.out
    flushed = await cli(NODE_BIN, ["flush"], down)
    assert flushed.code == 1 and "still wait" in flushed.err

    # A rejected signal stays visible rather than retried forever.
    done = await cli(NODE_BIN, publish_args("10.1.2.3", share="tenant"), down)
    assert status_of(done) == ["spooled"]
    flushed = await cli(NODE_BIN, ["flush"], client_env(home))
    assert flushed.code == 0, flushed.err
    assert sorted(status_of(flushed)) == ["accepted", "rejected"]
    assert await count_signals(database_url, [sid]) == {sid: 1}
    listing = await cli(NODE_BIN, ["spool", "--json"], client_env(home))
    (kept,) = json.loads(listing.out)["signals"]
    assert kept["state"] == "rejected" and kept["reason"].startswith("reserved_range")
    again = await cli(NODE_BIN, ["flush"], client_env(home))
    assert "nothing to send" in again.out


async def test_rate_limited_publish_is_spooled_and_sent_when_allowed(
    hub_process_factory: HubFactory, admin: Admin, tmp_path: Path, database_url: str
) -> None:
    hub = hub_process_factory()
    tenant = await new_tenant(admin, hub.base_url, "slow", limits={"publish_per_minute": 1})
    home = tmp_path / "n"
    await enrolled_node(
        home, hub.base_url, await enrollment_token(admin, hub.base_url, tenant), "n"
    )
    env = client_env(home)
    first = await cli(NODE_BIN, publish_args("203.0.113.60", share="tenant"), env)
    assert status_of(first) == ["accepted"], first.out + first.err
    second = await cli(NODE_BIN, publish_args("203.0.113.61", share="tenant"), env)
    assert second.code == 0, second.err
    assert status_of(second) == ["spooled"] and "rate_limited" in second.out
    sid = second.out.split()[0]
    listing = await cli(NODE_BIN, ["spool"], env)
    assert "rate_limited (429)" in listing.out

    reply = await admin.call(
        hub.base_url,
        "PATCH",
        f"/v1/admin/tenants/{tenant}",
        {"limits": {"publish_per_minute": 600}},
    )
    assert reply.status == 200, reply.body

    async def delivered() -> bool:  # the new limit reaches the hub within 5 s
        return (await cli(NODE_BIN, ["flush"], env)).code == 0

    await until(delivered, interval=0.5)
    assert await count_signals(database_url, [sid]) == {sid: 1}


class Relay:
    """A TCP relay to PostgreSQL that can be cut: the hub's database goes away."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = devservices.free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()
        self.server = None


async def test_hub_503_spools_and_flush_delivers_after(
    admin_token: str, services: object, database_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    parts = urlsplit(database_url)
    relay = Relay(parts.port or 5432)
    await relay.start()
    relayed = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
    env = hub_env(relayed, services.redis_url, redis_prefix)  # type: ignore[attr-defined]
    hub = await asyncio.to_thread(
        start_hub, env, devservices.free_port(), tmp_path / "hub.log", tmp_path / "hubtmp"
    )
    try:
        await asyncio.to_thread(hub.wait_ready)
        import aiohttp

        from .remote import Admin as AdminClient  # the fixture's session is per test

        async with aiohttp.ClientSession() as session:
            adm = AdminClient(session, admin_token)
            tenant = await new_tenant(adm, hub.base_url, "t")
            token = await enrollment_token(adm, hub.base_url, tenant)
        home = tmp_path / "n"
        await enrolled_node(home, hub.base_url, token, "n")
        node_env = client_env(home)

        await relay.cut()
        done = await cli(NODE_BIN, publish_args("203.0.113.70", share="tenant"), node_env)
        assert done.code == 0, done.err
        assert status_of(done) == ["spooled"] and "503" in done.out
        sid = done.out.split()[0]

        await relay.start()

        async def delivered() -> bool:
            return (await cli(NODE_BIN, ["flush"], node_env)).code == 0

        await until(delivered, interval=0.3)
        assert await count_signals(database_url, [sid]) == {sid: 1}
    finally:
        await asyncio.to_thread(hub.kill_all)
        if relay.server is not None:
            await relay.cut()


async def test_sigkill_mid_flush_loses_nothing_and_doubles_nothing(
    hub_process_factory: HubFactory, admin: Admin, tmp_path: Path, database_url: str
) -> None:
    hub = hub_process_factory()
    # Resent signals count against the publish limit too: room for two rounds.
    tenant = await new_tenant(admin, hub.base_url, "t", limits={"publish_per_minute": 5000})
    home = tmp_path / "n"
    await enrolled_node(
        home, hub.base_url, await enrollment_token(admin, hub.base_url, tenant), "n"
    )
    total = 600
    lines = ndjson(total)
    ids = ids_of(lines)
    done = await cli(
        NODE_BIN, ["publish"], client_env(home, HONEYMESH_HUB_URL=closed_url()), stdin=lines
    )
    assert done.code == 0, done.err
    assert status_of(done) == ["spooled"] * total

    proc = await asyncio.create_subprocess_exec(
        NODE_BIN,
        "flush",
        "--batch",
        "3",
        env=client_env(home),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    stored = 0

    async def some_stored() -> bool:
        nonlocal stored
        stored = sum((await count_signals(database_url, ids)).values())
        return stored > 0

    await until(some_stored, interval=0.01)
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    assert stored < total  # killed mid-flush, not after

    flushed = await cli(NODE_BIN, ["flush", "--batch", "100"], client_env(home))
    assert flushed.code == 0, flushed.err
    counts = await count_signals(database_url, ids)
    assert len(counts) == total and set(counts.values()) == {1}
    assert set(status_of(flushed)) <= {"accepted", "duplicate"}
    listing = await cli(NODE_BIN, ["spool"], client_env(home))
    assert "spool is empty" in listing.out


async def _approve(base: str, rev_env: dict[str, str], home: Path, ip: str) -> str:
    done = await cli(NODE_BIN, publish_args(ip, share="tenant"), client_env(home))
    assert status_of(done) == ["accepted"], done.out + done.err
    cid = done.out.split("candidate ")[1].split()[0]
    done = await cli(REVIEW_BIN, ["approve", cid, "--reason", "test"], rev_env)
    assert done.code == 0, done.out + done.err
    return cid


async def test_feed_resumes_after_restart_and_after_410_and_watch_rides_through(
    hub_process_factory: HubFactory,
    admin: Admin,
    tmp_path: Path,
    database_url: str,
    hub_env_vars: dict[str, str],
) -> None:
    hub = hub_process_factory()
    base = hub.base_url
    tenant = await new_tenant(admin, base, "t")
    home, watcher = tmp_path / "n1", tmp_path / "n2"
    token = await enrollment_token(admin, base, tenant, uses=2)
    await enrolled_node(home, base, token, "n1")
    await enrolled_node(watcher, base, token, "n2")
    rev = client_env(
        HONEYMESH_HUB_URL=base,
        HONEYMESH_REVIEW_TOKEN=await reviewer_token(admin, base, tenant, "rev"),
    )
    a = await _approve(base, rev, home, "203.0.113.81")

    out = tmp_path / "blocked.txt"
    marker = tmp_path / "ran.txt"
    watch = await asyncio.create_subprocess_exec(
        NODE_BIN,
        "watch",
        "--format",
        "plain",
        "--output",
        str(out),
        "--exec",
        f'echo "$HONEYMESH_OUTPUT" >> {marker}',
        env=client_env(watcher),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: out.exists() and out.read_text() == "203.0.113.81\n")
        pulled = await cli(NODE_BIN, ["pull", "--format", "plain"], client_env(home))
        assert pulled.lines() == ["203.0.113.81"]
        cursor_before = json.loads((home / "feed.json").read_text())["cursor"]

        # Restart the hub on the same port; the node resumes with a delta.
        hub.signal(signal.SIGTERM)
        assert await asyncio.to_thread(hub.wait_exit) == 0
        again: HubProcess = await asyncio.to_thread(
            start_hub, hub_env_vars, hub.port, tmp_path / "hub-again.log", tmp_path / "again"
        )
        try:
            await asyncio.to_thread(again.wait_ready)
            b = await _approve(base, rev, home, "203.0.113.82")
            pulled = await cli(NODE_BIN, ["pull", "--format", "plain"], client_env(home))
            assert pulled.lines() == ["203.0.113.81", "203.0.113.82"]
            assert "snapshot" not in pulled.err
            assert json.loads((home / "feed.json").read_text())["cursor"] != cursor_before
            # watch survived the restart and saw the new decision.
            await until(lambda: out.read_text() == "203.0.113.81\n203.0.113.82\n")
            assert marker.read_text().splitlines() == [str(out)] * 2

            # 410: retract one decision, compact the log past the node's cursor.
            done = await cli(REVIEW_BIN, ["retract", a, "--reason", "gone"], rev)
            assert done.code == 0, done.err
            conn = await asyncpg.connect(database_url)
            try:
                await compact(conn, datetime.now(UTC) + timedelta(seconds=1))
            finally:
                await conn.close()
            pulled = await cli(NODE_BIN, ["pull", "--format", "json"], client_env(home))
            assert pulled.code == 0, pulled.err
            assert "fresh snapshot" in pulled.err
            assert [d["id"] for d in json.loads(pulled.out)["decisions"]] == [b]
        finally:
            watch.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(watch.wait(), 15) == 0
            await asyncio.to_thread(again.kill_all)
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    assert watch.stderr is not None
    err = (await watch.stderr.read()).decode()
    assert "Traceback" not in err
