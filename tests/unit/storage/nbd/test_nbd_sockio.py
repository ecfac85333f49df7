"""ReplyWriter, SocketReader and IoPool on real socket pairs and threads."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
from collections.abc import Awaitable, Callable

import pytest

from pyhv.storage.nbd.iopool import IoPool
from pyhv.storage.nbd.sockio import ReplyWriter, SocketReader


def with_pair(test: Callable[[socket.socket, socket.socket], Awaitable[None]]) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        for s in (a, b):
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # force partial sends
        try:
            await asyncio.wait_for(test(a, b), 60)
        finally:
            a.close()
            b.close()

    asyncio.run(main())


async def recv_all(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        assert chunk, "peer closed early"
        buf += chunk
    return bytes(buf)


def test_writer_queues_partial_sends_in_order() -> None:
    async def t(a: socket.socket, b: socket.socket) -> None:
        w = ReplyWriter(asyncio.get_running_loop(), a, high_water=1 << 20)
        big = os.urandom(3 << 20)
        w.send(b"head", big)
        w.send(b"tail")
        received, _ = await asyncio.gather(recv_all(b, 8 + len(big)), w.drain(0))
        assert received == b"head" + big + b"tail"

    with_pair(t)


def test_writer_keeps_each_send_contiguous_across_threads() -> None:
    async def t(a: socket.socket, b: socket.socket) -> None:
        w = ReplyWriter(asyncio.get_running_loop(), a, high_water=1 << 20)
        per_thread, size = 50, 3000

        def sender(tag: int) -> None:
            for i in range(per_thread):
                w.send(struct.pack(">HH", tag, i), bytes([tag]) * size)

        threads = [threading.Thread(target=sender, args=(tag,)) for tag in range(4)]
        for th in threads:
            th.start()
        data = await recv_all(b, 4 * per_thread * (4 + size))
        for th in threads:
            th.join()
        seen: dict[int, int] = {}
        for pos in range(0, len(data), 4 + size):
            tag, i = struct.unpack(">HH", data[pos : pos + 4])
            assert data[pos + 4 : pos + 4 + size] == bytes([tag]) * size  # not interleaved
            assert seen.get(tag, -1) == i - 1  # each thread's sends in its order
            seen[tag] = i

    with_pair(t)


def test_writer_after_peer_closed() -> None:
    async def t(a: socket.socket, b: socket.socket) -> None:
        w = ReplyWriter(asyncio.get_running_loop(), a, high_water=0)
        b.close()
        for _ in range(3):
            w.send(b"x" * 100_000)  # never raises: the error is kept for drain
        with pytest.raises(OSError):
            await w.drain()

    with_pair(t)


def test_reader_small_and_large_reads_across_partial_sends() -> None:
    async def t(a: socket.socket, b: socket.socket) -> None:
        r = SocketReader(asyncio.get_running_loop(), b)
        payload = os.urandom(1 << 20)
        message = b"0123456789" + payload + b"end"

        async def feed() -> None:
            for pos in range(0, len(message), 7000):
                await asyncio.get_running_loop().sock_sendall(a, message[pos : pos + 7000])
            a.shutdown(socket.SHUT_WR)

        feeder = asyncio.create_task(feed())
        assert await r.readexactly(4) == b"0123"
        assert await r.readexactly(6) == b"456789"
        assert bytes(await r.readexactly(len(payload))) == payload  # the direct path
        assert await r.readexactly(3) == b"end"
        await feeder
        with pytest.raises(asyncio.IncompleteReadError):
            await r.readexactly(1)

    with_pair(t)


def test_reader_says_what_it_has_buffered() -> None:
    """``buffered`` is what the connection checks before sending the replies it collected."""

    async def t(a: socket.socket, b: socket.socket) -> None:
        r = SocketReader(asyncio.get_running_loop(), b)
        assert r.buffered == 0
        a.send(b"abcdefgh")
        assert await r.readexactly(2) == b"ab"
        assert r.buffered == 6  # the rest arrived with it
        assert await r.readexactly(6) == b"cdefgh"
        assert r.buffered == 0

    with_pair(t)


def test_iopool_delivers_results_and_errors_on_the_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = IoPool(loop, 3)
        loop_thread = threading.get_ident()
        results: dict[int, object] = {}
        done = asyncio.Event()

        def callback(key: int, result: object, exc: BaseException | None) -> None:
            assert threading.get_ident() == loop_thread
            results[key] = exc if exc is not None else result
            if len(results) == 20:
                done.set()

        def work(key: int) -> int:
            if key % 5 == 0:
                raise ValueError(key)
            return key * 2

        for key in range(20):
            pool.submit(work, (key,), lambda r, e, key=key: callback(key, r, e))
        await asyncio.wait_for(pool.settle(done.wait()), 30)
        await asyncio.to_thread(pool.shutdown)
        assert all(isinstance(results[k], ValueError) for k in range(0, 20, 5))
        assert all(results[k] == k * 2 for k in range(20) if k % 5)

    asyncio.run(main())


def test_iopool_defers_completions_until_the_loop_asks() -> None:
    async def main() -> None:
        pool = IoPool(asyncio.get_running_loop(), 2)
        ran = threading.Event()
        got: list[object] = []
        pool.submit(ran.set, (), lambda r, e: got.append("done"))
        await asyncio.to_thread(ran.wait, 30)
        await asyncio.sleep(0.05)
        assert got == []  # nobody waits: no wake-up, the callback waits for the loop
        pool.run_completions()
        assert got == ["done"]
        await asyncio.to_thread(pool.shutdown)

    asyncio.run(main())


def test_iopool_shutdown_runs_the_backlog_first() -> None:
    async def main() -> None:
        pool = IoPool(asyncio.get_running_loop(), 1)
        gate = threading.Event()
        got: list[int] = []
        for i in range(5):
            pool.submit(
                gate.wait if i == 0 else int, (30,) if i == 0 else (i,), lambda r, e: got.append(r)
            )
        gate.set()
        await asyncio.to_thread(pool.shutdown)
        pool.run_completions()
        assert got == [True, 1, 2, 3, 4]

    asyncio.run(main())
