"""Review queue pages and a batch of decisions at 100,000 pending candidates.

Targets (the review workflow issue): a queue page of 100 in each order, and the page
after a deep `after`, each at most 50 ms end to end; the queue's plans read an index,
never a Seq Scan on candidates; a batch of 500 decisions is one request, timed.

What it does, all on this machine:

- a throwaway PostgreSQL (scripts/devservices.py; `--durable` for fsync and
  synchronous_commit on) and the hub in process (aiohttp TestServer, no Redis);
- candidates inserted directly with SQL (generate_series): `--candidates` pending mesh
  candidates (default 100,000) with 1 to 20 reporters and first_seen spread over 30
  days, plus 10,000 approved mesh ones and 10,000 pending ones of a tenant, so the
  indexes hold other states and scopes too; then ANALYZE;
- each page is timed over HTTP with a mesh reviewer token (median and worst of
  `--runs`, after a warm-up), its statement EXPLAINed (ANALYZE, BUFFERS) from the very
  text `store.review.queue_sql` builds;
- 500 pending candidates approved in one POST /v1/review/decisions, and 500 more
  rejected; each answer checked (500 `applied`).

    python -m bench.review [--candidates 100000] [--runs 30] [--durable]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.targets import Target, exit_status, report

ROOT = Path(__file__).resolve().parent.parent
TARGET_PAGE_MS = 50.0
BATCH = 500

_TENANT_SQL = """
INSERT INTO tenants (id, name, plan, status, limits, created_at, updated_at)
VALUES ($1, 'bench', 'pro', 'active', '{}', now(), now())
"""

# $2 pending mesh, $3 approved mesh, $4 pending of tenant $1.
_CANDIDATES_SQL = """
INSERT INTO candidates (id, indicator_type, indicator_value, network, scope, scope_tenant_id,
    scope_key, state, origin, scenarios, reporters, tenants, signal_count, max_confidence,
    max_ttl_seconds, first_seen, last_seen, expires_at, approved_at, decided_at, created_at,
    updated_at)
SELECT gen_random_uuid(), 'ip', host(ip), set_masklen(ip, 32)::cidr,
       CASE WHEN g > $2::int + $3::int THEN 'tenant' ELSE 'mesh' END,
       CASE WHEN g > $2::int + $3::int THEN $1::uuid END,
       CASE WHEN g > $2::int + $3::int THEN $1::text ELSE 'mesh' END,
       CASE WHEN g > $2::int AND g <= $2::int + $3::int THEN 'approved' ELSE 'pending' END,
       CASE WHEN g > $2::int AND g <= $2::int + $3::int THEN 'review' END,
       ARRAY[(ARRAY['ssh/brute-force', 'redis/unauthenticated-config-set', 'http/scanner',
                    'smtp/relay'])[1 + g % 4]],
       1 + (hashint % 20), 1 + (hashint % 3), 1 + (hashint % 50), 50 + (hashint % 50), 3600,
       first_seen, first_seen + interval '1 hour',
       CASE WHEN g > $2::int AND g <= $2::int + $3::int THEN now() + interval '1 day' END,
       CASE WHEN g > $2::int AND g <= $2::int + $3::int THEN now() END,
       CASE WHEN g > $2::int AND g <= $2::int + $3::int THEN now() END,
       first_seen, first_seen
FROM (
    SELECT g, inet '11.0.0.0' + g AS ip, abs(hashint4(g)) AS hashint,
           now() - interval '30 days' * (abs(hashint4(g + 7)) / 2147483647.0) AS first_seen
    FROM generate_series(1, $2::int + $3::int + $4::int) AS g
) s
"""


@dataclass(frozen=True, slots=True)
class Timing:
    name: str
    median_ms: float
    p95_ms: float
    worst_ms: float
    rows: int
    seq_scan: bool
    plan_top: str


async def _seed(dsn: str, pending: int) -> tuple[str, str]:
    from honeymesh_hub.clock import system_clock, to_datetime
    from honeymesh_hub.services.admin import create_api_token
    from honeymesh_hub.store.db import connect, migrate

    await migrate(dsn)
    conn = await connect(dsn)
    tenant_id = uuid.uuid4()
    try:
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(_TENANT_SQL, tenant_id)
            await conn.execute(_CANDIDATES_SQL, tenant_id, pending, 10_000, 10_000)
            made = await create_api_token(
                conn,
                to_datetime(system_clock()),
                "bench",
                role="reviewer",
                scope="mesh",
                name="bench",
                expires_at=None,
            )
        await conn.execute("ANALYZE candidates")
        count = await conn.fetchval(
            "SELECT count(*) FROM candidates WHERE state = 'pending' AND scope_key = 'mesh'"
        )
        print(
            f"seeded {count:,} pending mesh candidates (+10,000 approved, +10,000 of a tenant) in"
            f" {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    finally:
        await conn.close()
    return made["token"], str(tenant_id)


async def _explain(dsn: str, query: Any) -> tuple[bool, str]:
    from honeymesh_hub.store.db import connect
    from honeymesh_hub.store.review import queue_sql

    sql, args = queue_sql(query)
    conn = await connect(dsn)
    try:
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
    finally:
        await conn.close()
    lines = [r[0] for r in rows]
    seq = any("Seq Scan on candidates" in line for line in lines)
    scan = next((line.strip() for line in lines if "Scan" in line), lines[0])
    cond = next((line.strip() for line in lines if "Index Cond" in line), "")
    return seq, f"{scan.removeprefix('->').strip().split('  (')[0]}; {cond}"


async def _bench(dsn: str, pending: int, runs: int) -> int:
    import aiohttp
    from aiohttp.test_utils import TestServer

    from honeymesh_hub.app import create_app
    from honeymesh_hub.config import Config
    from honeymesh_hub.services.review import decode_after, encode_after
    from honeymesh_hub.store.db import connect
    from honeymesh_hub.store.review import QueueQuery

    token, _ = await _seed(dsn, pending)
    headers = {"Authorization": f"Bearer {token}"}
    server = TestServer(create_app(Config(database_url=dsn)))
    await server.start_server()
    base = str(server.make_url(""))

    # The deep cursors: the keys of the row 90% down each order (OFFSET here only,
    # to find the row; the hub's pages never use it).
    conn = await connect(dsn)
    try:
        deep = int(pending * 0.9)
        r = await conn.fetchrow(
            "SELECT reporters, id FROM candidates WHERE state = 'pending' AND scope_key = 'mesh'"
            " ORDER BY reporters DESC, id DESC OFFSET $1 LIMIT 1",
            deep,
        )
        o = await conn.fetchrow(
            "SELECT first_seen, id FROM candidates WHERE state = 'pending' AND scope_key = 'mesh'"
            " ORDER BY first_seen, id OFFSET $1 LIMIT 1",
            deep,
        )
    finally:
        await conn.close()
    deep_reporters = encode_after("reporters", r["reporters"], r["id"])
    deep_oldest = encode_after("oldest", o["first_seen"], o["id"])

    pages: list[tuple[str, str, str, str | None, dict[str, Any]]] = [
        ("order=reporters, first page", "order=reporters&limit=100", "reporters", None, {}),
        ("order=oldest, first page", "order=oldest&limit=100", "oldest", None, {}),
        (
            f"order=reporters, after row {deep:,}",
            f"order=reporters&limit=100&after={deep_reporters}",
            "reporters",
            deep_reporters,
            {},
        ),
        (
            f"order=oldest, after row {deep:,}",
            f"order=oldest&limit=100&after={deep_oldest}",
            "oldest",
            deep_oldest,
            {},
        ),
        (
            "order=reporters, min_reporters=15",
            "order=reporters&limit=100&min_reporters=15",
            "reporters",
            None,
            {"min_reporters": 15},
        ),
        (
            "order=oldest, scenario filter",
            "order=oldest&limit=100&scenario=http/scanner",
            "oldest",
            None,
            {"scenario": "http/scanner"},
        ),
    ]
    timings: list[Timing] = []
    try:
        async with aiohttp.ClientSession(headers=headers) as http:

            async def page(query: str) -> tuple[float, int]:
                started = time.perf_counter()
                async with http.get(f"{base}/v1/review/candidates?{query}") as resp:
                    body = await resp.json()
                    assert resp.status == 200, body
                return (time.perf_counter() - started) * 1000, len(body["candidates"])

            for name, query, order, after, filters in pages:
                for _ in range(5):  # warm the pool and the prepared statement
                    await page(query)
                samples = [await page(query) for _ in range(runs)]
                ms = sorted(s[0] for s in samples)
                q = QueueQuery(
                    state="pending",
                    scope_key="mesh",
                    order=order,
                    limit=101,
                    after=decode_after(order, after) if after else None,
                    **filters,
                )
                seq, top = await _explain(dsn, q)
                timings.append(
                    Timing(
                        name,
                        statistics.median(ms),
                        ms[min(len(ms) - 1, int(len(ms) * 0.95))],
                        ms[-1],
                        samples[0][1],
                        seq,
                        top,
                    )
                )

            # A batch of 500 decisions, approve then reject, one request each.
            batches: list[tuple[str, int, int, float]] = []
            ids_by_page: list[list[str]] = []
            after = ""
            for size in (20, BATCH, BATCH):
                url = f"{base}/v1/review/candidates?order=oldest&limit={size}{after}"
                async with http.get(url) as resp:
                    got = await resp.json()
                ids_by_page.append([c["id"] for c in got["candidates"]])
                after = f"&after={got['next']}"
            warm, ids, more = ids_by_page
            # Warm-up: the first batch on a connection also prepares the statements.
            for action, chosen in (("approve", warm[:10]), ("reject", warm[10:])):
                body = {
                    "decisions": [
                        {"candidate_id": cid, "action": action, "reason": "warm"} for cid in chosen
                    ]
                }
                async with http.post(f"{base}/v1/review/decisions", json=body) as resp:
                    assert resp.status == 200, await resp.text()
            for action, chosen in (("approve", ids), ("reject", more)):
                body = {
                    "decisions": [
                        {"candidate_id": cid, "action": action, "reason": "bench"} for cid in chosen
                    ]
                }
                started = time.perf_counter()
                async with http.post(f"{base}/v1/review/decisions", json=body) as resp:
                    answer = await resp.json()
                    assert resp.status == 200, answer
                elapsed = (time.perf_counter() - started) * 1000
                applied = sum(1 for x in answer["results"] if x["status"] == "applied")
                batches.append((action, len(chosen), applied, elapsed))
    finally:
        await server.close()

    width = max(len(t.name) for t in timings)
    print(f"\nqueue pages (limit 100) over HTTP, {runs} runs each; target <= {TARGET_PAGE_MS} ms")
    print(
        f"{'page':<{width}}  {'median ms':>9}  {'p95 ms':>6}  {'worst ms':>8}  {'rows':>4}"
        "  seq scan  plan"
    )
    judged: list[Target] = []
    for t in timings:
        targeted = "filter" not in t.name and "min_reporters" not in t.name
        if targeted:
            judged.append(
                Target(
                    f"page {t.name}: median <= {TARGET_PAGE_MS:.0f} ms, no Seq Scan",
                    f"{t.median_ms:.2f} ms, {'Seq Scan' if t.seq_scan else 'no Seq Scan'}",
                    t.median_ms <= TARGET_PAGE_MS and not t.seq_scan,
                )
            )
        print(
            f"{t.name:<{width}}  {t.median_ms:>9.2f}  {t.p95_ms:>6.2f}  {t.worst_ms:>8.2f}"
            f"  {t.rows:>4}  "
            f"{'YES' if t.seq_scan else 'no':<8}  {t.plan_top}"
        )
    print("\ndecisions in one request")
    for action, n, applied, took in batches:
        print(
            f"  {n} x {action}: {took:.1f} ms, {applied} applied ({took / max(n, 1):.2f} ms each)"
        )
        judged.append(
            Target(
                f"{n} x {action} in one request: all applied", f"{applied} applied", applied == n
            )
        )
    return exit_status(report(judged))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.review", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--candidates", type=int, default=100_000, help="pending mesh candidates")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page")
    parser.add_argument(
        "--durable", action="store_true", help="fsync and synchronous_commit on (slower commits)"
    )
    args = parser.parse_args(argv)
    print(f"== review: queue pages and decisions at {args.candidates:,} pending candidates")
    print(f"   {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {sys.version.split()[0]}")
    sys.path.insert(0, str(ROOT / "scripts"))
    import devservices

    pg = None
    try:
        pg = devservices.PostgresServer(fast=not args.durable)
        pg.start()
        dsn = pg.ensure_database("bench_review")
        return asyncio.run(_bench(dsn, args.candidates, args.runs))
    except devservices.DevServiceError as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 1
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
