from __future__ import annotations

import asyncio
from pathlib import Path

from pyhv.worker.console import BACKLOG_BYTES, Console


def test_output_goes_to_log_clients_and_waiters(short_home: Path) -> None:
    async def go() -> None:
        log = short_home / "console.log"
        console = Console(log)
        sock = short_home / "serial.sock"
        peer: list[asyncio.StreamWriter] = []

        async def qemu(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer.append(writer)
            writer.write(b"booting\n")
            await writer.drain()
            assert await reader.readexactly(3) == b"ls\n"
            writer.write(b"PYHV-GUEST-READY\n")
            await writer.drain()

        server = await asyncio.start_unix_server(qemu, path=str(sock))
        await console.open(str(sock))
        waiter = asyncio.create_task(console.wait_for(b"PYHV-GUEST-READY", 5))
        await asyncio.sleep(0.05)
        backlog, queue = console.subscribe()
        assert backlog == b"booting\n"
        await console.send(b"ls\n")
        assert await waiter
        assert await queue.get() == b"PYHV-GUEST-READY\n"
        assert await console.wait_for(b"booting", 1)  # seen earlier in this run
        assert not await console.wait_for(b"never", 0.05)
        await console.close()
        assert log.read_bytes() == b"booting\nPYHV-GUEST-READY\n"
        assert await queue.get() is None
        server.close()

    asyncio.run(go())


def test_backlog_is_bounded(short_home: Path) -> None:
    console = Console(short_home / "c.log")
    console.feed(b"x" * (BACKLOG_BYTES + 10))
    backlog, _ = console.subscribe()
    assert len(backlog) == BACKLOG_BYTES
