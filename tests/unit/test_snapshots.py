"""The shared snapshot renderings (services/snapshots.py): the byte bound, one read
for concurrent misses, pages keyed by their position, the newest first page, and gzip
members that decode to the identity body."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from uuid import uuid4

from honeymesh_hub.routes.feed import accepts_gzip
from honeymesh_hub.services.snapshots import Rendering, SnapshotCache, render


def page(n: int, at: tuple[int, int] = (10, 0)) -> Rendering:
    added = json.dumps([{"id": str(uuid4()), "n": i} for i in range(n)])
    return render(n, uuid4(), added, True, False, at, {"mesh": "note\n"})


def test_the_byte_bound_holds_and_the_oldest_go_first() -> None:
    async def main() -> None:
        cache = SnapshotCache(max_bytes=20_000)
        made = []
        for i in range(40):
            r = page(50)
            made.append(r)
            key = cache.key(["mesh", "t"], (10, 0), None, i, False)
            assert await cache.get(key, lambda r=r: asyncio.sleep(0, r)) is r
            await cache.deflate(r)
            assert cache.bytes <= cache.max_bytes
            assert cache.bytes == sum(e.size for e in cache._entries.values())
        assert 0 < len(cache) < 40 and made[-1].kept and not made[0].kept
        huge = page(2000)
        got = await cache.get(
            cache.key(["mesh"], (10, 0), None, 1, True), lambda: asyncio.sleep(0, huge)
        )
        assert got is huge and not huge.kept and cache.bytes <= cache.max_bytes

    asyncio.run(main())


def test_concurrent_misses_share_one_read_and_positions_do_not_mix() -> None:
    async def main() -> None:
        cache = SnapshotCache()
        reads = 0

        async def make() -> Rendering:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.01)
            return page(3)

        key = cache.key(["mesh"], (5, 1), None, 2, True)
        got = await asyncio.gather(*(cache.get(key, make) for _ in range(20)))
        assert reads == 1 and all(g is got[0] for g in got)
        assert cache.newest_first(["mesh"], 2) == (5, 1)
        # A page as of another position is another read.
        newer = await cache.get(cache.key(["mesh"], (7, 0), None, 2, True), make)
        assert reads == 2 and newer is not got[0]
        assert await cache.get(key, make) is got[0]
        assert cache.newest_first(["mesh"], 2) == (7, 0)
        assert json.loads(newer.body("c"))["checkpoints"] == {"mesh": "note\n"}

    asyncio.run(main())


def test_gzip_is_one_member_that_decodes_to_the_body() -> None:
    async def main() -> None:
        cache = SnapshotCache()
        r = page(200)
        await cache.deflate(r)
        for cursor in ("abc", "x" * 90, ""):
            packed = r.gzip(cursor)
            unpack = zlib.decompressobj(16 + zlib.MAX_WBITS)
            assert unpack.decompress(packed) == r.body(cursor) == gzip.decompress(packed)
            assert unpack.eof and not unpack.unused_data
            assert json.loads(r.body(cursor))["cursor"] == cursor

    asyncio.run(main())


def test_accept_encoding() -> None:
    for header, expected in (
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, x-gzip;q=0.5", True),
        ("*", True),
        (None, False),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("br, *;q=0", False),
        ("GZIP;Q=1", True),
    ):
        assert accepts_gzip(header) is expected, header
