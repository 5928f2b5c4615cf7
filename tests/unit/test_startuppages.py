"""CrowdSec startup pages shared by every bouncer (services/startuppages.py): one read
for concurrent misses, a read older than a stream's boundary never serves it, the byte
bound, and gzip members of shared and fresh blocks that any decoder reads whole."""

from __future__ import annotations

import asyncio
import gzip
import zlib

from honeymesh_hub.services.startuppages import GzipWriter, Page, StartupPages


def _page(n: int, xmin: int) -> Page:
    body = b", ".join(b'{"id": %d}' % i for i in range(n))
    return Page(body, n, n, True, xmin)


def test_concurrent_misses_share_one_read_and_old_reads_do_not_serve() -> None:
    async def main() -> None:
        pages = StartupPages()
        reads = 0

        async def make() -> Page:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.01)
            return _page(3, 10 + reads)

        got = await asyncio.gather(*(pages.get_after(("k",), 5, make) for _ in range(30)))
        assert reads == 1 and all(g is got[0] for g in got)
        assert (await pages.get_after(("k",), 50, make)) is not got[0] and reads == 2

    asyncio.run(main())


def test_the_byte_bound_holds() -> None:
    async def main() -> None:
        pages = StartupPages(max_bytes=10_000)
        for i in range(50):
            page = _page(100, 1)
            await pages.get_after((i,), 0, lambda p=page: asyncio.sleep(0, p))
            await pages.deflated(page)
            assert pages.bytes <= pages.max_bytes
        assert 0 < len(pages._entries) < 50

    asyncio.run(main())


def test_a_member_of_shared_and_fresh_blocks_decodes_whole() -> None:
    async def main() -> None:
        pages = StartupPages()
        parts = [_page(500, 1), _page(0, 1), _page(7, 1)]
        gz = GzipWriter()
        out = [gz.head(), gz.fresh(b'{"new": [')]
        plain = [b'{"new": [']
        for i, page in enumerate(parts):
            if i:
                out.append(gz.fresh(b", "))
                plain.append(b", ")
            out.append(gz.shared(page.body, await pages.deflated(page)))
            plain.append(page.body)
        out += [gz.fresh(b'], "deleted": []}'), gz.end()]
        plain.append(b'], "deleted": []}')
        packed = b"".join(out)
        unpack = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert unpack.decompress(packed) == b"".join(plain) == gzip.decompress(packed)
        assert unpack.eof and not unpack.unused_data

    asyncio.run(main())
