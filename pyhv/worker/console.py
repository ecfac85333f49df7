"""The VM's serial console (COM1): QEMU's output goes to the console log and to attached clients.

The worker is the only client of QEMU's serial socket, so output is never lost when nobody is
attached; ``pyhv vm console`` attaches through the worker's control socket instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import BinaryIO

BACKLOG_BYTES = 4096  # what a newly attached client sees first, so a prompt is visible


class Console:
    def __init__(self, log_path: Path) -> None:
        self._log_path = log_path
        self._log: BinaryIO | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._tail = bytearray()
        self._seen = bytearray()  # kept only while someone waits for a text
        self._waiters: list[tuple[bytes, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def open(self, socket_path: str) -> None:
        """Start from an empty log: each run of the VM has its own console log."""
        self._log = open(self._log_path, "wb", buffering=0)  # noqa: SIM115 (lives with the task)
        await self.attach(socket_path)

    async def attach(self, socket_path: str) -> None:
        """Read QEMU's serial socket into the open log and the attached clients."""
        reader, self._writer = await asyncio.open_unix_connection(socket_path)
        self._task = asyncio.create_task(self._pump(reader), name="console")

    async def detach(self) -> None:
        """Let go of QEMU's serial socket but keep log and clients: a checkpoint applied to
        the running VM replaces QEMU, and the console follows the new one (:meth:`attach`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(65536):
            self.feed(data)
        for q in self._clients:
            q.put_nowait(None)

    def feed(self, data: bytes) -> None:
        """Everything QEMU printed goes through here: log, backlog, clients, waiters."""
        if self._log is not None:
            self._log.write(data)
        self._tail += data
        del self._tail[:-BACKLOG_BYTES]
        for q in self._clients:
            q.put_nowait(data)
        if self._waiters:
            self._seen += data
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        for text, fut in self._waiters:
            if text in self._seen and not fut.done():
                fut.set_result(None)
        self._waiters = [(t, f) for t, f in self._waiters if not f.done()]

    def _read_log(self) -> bytes:
        try:
            return self._log_path.read_bytes()
        except OSError:
            return b""

    async def wait_for(self, text: bytes, timeout: float) -> bool:
        """True once ``text`` has appeared on the console in this run, False after the timeout."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((text, fut))
        if len(self._waiters) == 1:
            self._seen += self._read_log()
        self._wake_waiters()
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters = [(t, f) for t, f in self._waiters if f is not fut]
            if not self._waiters:
                self._seen.clear()

    def subscribe(self) -> tuple[bytes, asyncio.Queue[bytes | None]]:
        """A queue of live output (``None`` = console closed) and the recent backlog."""
        q: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._clients.add(q)
        return bytes(self._tail), q

    def unsubscribe(self, q: asyncio.Queue[bytes | None]) -> None:
        self._clients.discard(q)

    async def send(self, data: bytes) -> None:
        """Keyboard input for the guest's serial port."""
        if self._writer is not None:
            self._writer.write(data)
            await self._writer.drain()

    async def close(self) -> None:
        await self.detach()
        if self._log is not None:
            self._log.close()
            self._log = None
        for q in self._clients:
            q.put_nowait(None)
