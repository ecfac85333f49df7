"""Reads served on the event loop (``DiskImage.read_cached``) and their fallback to the threads."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from nbd_client import MemImage, client, eventually, run

from pyhv.storage.nbd import NbdServer
from pyhv.storage.nbd import protocol as p
from pyhv.storage.nbd.connection import INLINE_READ_MAX

SIZE = 1 << 20


class CachedMemImage(MemImage):
    """Ranges overlapping ``uncached`` are not "in the page cache": read() serves them (thread)."""

    def __init__(self, size: int, fill: int = 0) -> None:
        super().__init__(size, fill=fill)
        self.uncached: list[tuple[int, int]] = []
        self.cached_calls = 0
        self.thread_reads = 0
        self.fail_cached = False

    def read_cached(self, offset: int, length: int) -> bytes | None:
        self.cached_calls += 1
        if self.fail_cached:
            raise RuntimeError("bug in read_cached")
        if any(o < offset + length and offset < o + n for o, n in self.uncached):
            return None
        return bytes(self.data[offset : offset + length])

    def read(self, offset: int, length: int) -> bytes:
        self.thread_reads += 1
        return super().read(offset, length)


@pytest.mark.parametrize("structured", [False, True])
def test_cached_and_uncached_reads_pipelined(tmp_path: Path, structured: bool) -> None:
    image = CachedMemImage(SIZE)
    for i in range(64):
        image.data[i * 4096 : (i + 1) * 4096] = bytes([i]) * 4096
    image.uncached = [(i * 4096, 1) for i in range(0, 64, 3)]  # every third block is not

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock, structured=structured)
        reads = {c.send(p.NBD_CMD_READ, i * 4096, 4096): i for i in range(64)}
        for _ in range(64):
            r = await c.reply()
            assert r.error == 0 and r.data == bytes([reads.pop(r.handle)]) * 4096
        assert not reads
        assert image.cached_calls == 64 and image.thread_reads == 22
        await eventually(lambda: server.stats("disk")["read"]["ops"] == 64)
        assert server.stats("disk")["read"]["bytes"] == 64 * 4096
        await c.close()

    run(t, tmp_path)


def test_large_reads_and_errors_skip_the_loop(tmp_path: Path) -> None:
    image = CachedMemImage(SIZE, fill=5)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock, structured=True)
        r = await c.call(p.NBD_CMD_READ, 0, INLINE_READ_MAX + 512)
        assert r.data == b"\x05" * (INLINE_READ_MAX + 512)
        assert image.cached_calls == 0 and image.thread_reads == 1
        assert (await c.call(p.NBD_CMD_READ, SIZE - 10, 20)).error == p.NBD_EINVAL
        assert image.cached_calls == 0
        assert (await c.call(p.NBD_CMD_READ, SIZE - 10, 10)).data == b"\x05" * 10
        assert image.cached_calls == 1 and image.thread_reads == 1
        await c.close()

    run(t, tmp_path)


def test_disconnect_after_cached_reads_answers_them(tmp_path: Path) -> None:
    image = CachedMemImage(SIZE, fill=3)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock)
        handles = {c.send(p.NBD_CMD_READ, i * 512, 512) for i in range(40)}
        c.send(p.NBD_CMD_DISC)
        for _ in range(40):
            r = await c.reply()
            assert r.data == b"\x03" * 512
            handles.remove(r.handle)
        assert await c.reader.read() == b""
        assert image.thread_reads == 0

    run(t, tmp_path)


def test_cached_reads_wait_at_the_swap_gate(tmp_path: Path) -> None:
    old, new = CachedMemImage(SIZE, fill=1), CachedMemImage(SIZE, fill=2)
    old.gate.clear()  # the write below stays inside the old image

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", old, read_only=False)
        c = await client(sock)
        write = c.send(p.NBD_CMD_WRITE, 0, 4, payload=b"wwww")
        await asyncio.to_thread(old.entered.wait, 30)
        swap = asyncio.create_task(server.swap_image("disk", new))
        await asyncio.sleep(0.05)
        read = c.send(p.NBD_CMD_READ, 512, 4)  # held at the gate, then served by the new image
        await asyncio.sleep(0.05)
        assert not swap.done() and old.cached_calls == 0
        old.gate.set()
        r1, r2 = await c.reply(), await c.reply()
        assert (r1.handle, r1.error) == (write, 0)
        assert (r2.handle, r2.data) == (read, b"\x02" * 4)
        assert await swap is old and new.cached_calls == 1 and old.cached_calls == 0
        await c.close()

    run(t, tmp_path)


def test_a_read_cached_bug_costs_the_connection_not_the_export(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = CachedMemImage(SIZE)
    image.fail_cached = True

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock)
        c.send(p.NBD_CMD_READ, 0, 8)
        assert await c.reader.read() == b""  # dropped
        await c.close()
        assert await server.remove_export("disk") is image  # nothing left counted in flight

    with caplog.at_level(logging.ERROR):
        run(t, tmp_path)
    assert "connection failed" in caplog.text
