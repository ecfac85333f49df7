"""Buffered reads and gathered writes on one non-blocking socket, through the event loop.

Why not asyncio streams: on Python 3.11 a transport queues unsent data in one ``bytearray``
and deletes from its front after every ``send``, so sixteen queued 1 MiB read replies cost
quadratic copying (measured: queue depth 16 was slower than depth 1). :class:`ReplyWriter`
instead keeps the buffers it was given and sends them with ``sendmsg`` (scatter-gather, no join
copy); :class:`SocketReader` reads large write payloads straight into their own buffer.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from itertools import islice
from typing import cast

_READ_BUFFER = 256 * 1024
_DIRECT_READ = 64 * 1024  # payloads larger than this are received into their own buffer
_IOV_BATCH = 64  # buffers per sendmsg (Linux IOV_MAX is 1024)


class SocketReader:
    """``readexactly`` on a socket the loop watches for the whole connection.

    Why not ``loop.sock_recv_into``: it tries ``recv``, then adds and removes the fd from epoll
    for every wait: three extra system calls per request, and system calls are expensive on
    the build machine. Here one ``add_reader`` serves the connection; data is received when the
    loop reports the socket readable, into a reusable buffer, or straight into the buffer of a
    large payload being waited for. Reading pauses while the buffer is full and nobody waits.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._buf = bytearray(_READ_BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._need = 0  # what the waiter needs buffered
        self._target: memoryview | None = None  # a large payload being received directly
        self._target_pos = 0
        self._waiter: asyncio.Future[None] | None = None
        self._watching = False
        self._error: BaseException | None = None  # EOF (IncompleteReadError) or OSError

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes.

        Large payloads come back as the ``bytearray`` they were received into, typed as bytes:
        images only read from it and nobody writes to it afterwards, so the copy ``bytes()``
        would make buys nothing.

        :raises asyncio.IncompleteReadError: when the peer closes first.
        :raises OSError: when receiving fails.
        """
        avail = self._end - self._start
        if avail < n:
            if n > _DIRECT_READ:
                out = bytearray(n)
                out[:avail] = self._view[self._start : self._end]
                self._start = self._end = 0
                self._target, self._target_pos = memoryview(out), avail
                await self._wait()
                return cast(bytes, out)
            self._compact()
            self._need = n
            await self._wait()
        out_bytes = bytes(self._view[self._start : self._start + n])
        self._start += n
        return out_bytes

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read: ``readexactly`` of up to this many will not wait."""
        return self._end - self._start

    def close(self) -> None:
        """Stop watching the socket (before it is closed: the fd number will be reused)."""
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._fd)

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        if not self._watching:
            self._watching = True
            self._loop.add_reader(self._fd, self._on_readable)
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._target = None

    def _compact(self) -> None:
        avail = self._end - self._start
        if self._start:
            self._view[:avail] = self._view[self._start : self._end]
        self._start, self._end = 0, avail

    def _on_readable(self) -> None:
        target = self._target
        if target is None and self._end == len(self._buf):
            if not self._start:  # full and nobody waiting: pause until a read wants more
                self.close()
                return
            self._compact()
        try:
            if target is not None:
                n = self._sock.recv_into(target[self._target_pos :])
            else:
                n = self._sock.recv_into(self._view[self._end :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._fail(err)
            return
        if n == 0:
            got = bytes(target[: self._target_pos]) if target is not None else b""
            self._fail(asyncio.IncompleteReadError(got, None))
            return
        if target is not None:
            self._target_pos += n
            if self._target_pos == len(target):
                self._wake()
        else:
            self._end += n
            if self._end - self._start >= self._need:
                self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, err: BaseException) -> None:
        self._error = err
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(err)


class ReplyWriter:
    """Sends buffers in order without copying them, from any thread; ``drain`` waits (loop).

    ``send`` may be called from the I/O threads (each sends the reply of the request it ran) as
    well as from the loop thread; a lock keeps every call's buffers contiguous on the wire.
    What the socket does not take at once is queued and sent by the loop when writable.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, high_water: int
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._high_water = high_water
        self._lock = threading.Lock()
        self._loop_thread = threading.get_ident()  # made on the loop thread
        self._queue: deque[memoryview] = deque()
        self._queued = 0
        self._watching = False  # the loop has (or is about to have) a writer callback
        self._waiter: asyncio.Future[None] | None = None
        self.error: OSError | None = None

    def send(self, *bufs: bytes) -> None:
        """Send ``bufs`` back to back after everything sent before; queues what does not fit."""
        with self._lock:
            if self.error is not None:
                return
            if self._queue:
                self._enqueue(bufs)
                return
            try:
                n = self._sock.sendmsg(bufs)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as err:
                self._fail(err)
                return
            for b in bufs:
                if n >= len(b):
                    n -= len(b)
                    continue
                self._enqueue((memoryview(b)[n:],))
                n = 0
            if self._queue and not self._watching:
                self._watching = True
                self._loop.call_soon_threadsafe(self._watch)

    @property
    def congested(self) -> bool:
        """More than the high-water mark is queued, or sending failed: time to ``drain``."""
        return self._queued > self._high_water or self.error is not None

    async def drain(self, limit: int | None = None) -> None:
        """Wait until at most ``limit`` bytes (default: the high-water mark) are queued.

        :raises OSError: the error that ended sending.
        """
        limit = self._high_water if limit is None else limit
        while self._queued > limit and self.error is None:
            self._waiter = self._loop.create_future()
            await self._waiter
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Drop anything unsent (callers ``drain(0)`` first to flush); later sends are ignored."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        self._queue.clear()
        self._queued = 0
        self.error = self.error or ConnectionAbortedError("connection closed")
        if threading.get_ident() == self._loop_thread:
            # Synchronously: the caller may close the fd next, and a later remove_writer
            # could hit a new connection that got the same fd number.
            self._unwatch()
        else:
            self._loop.call_soon_threadsafe(self._unwatch)

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_writer(self._fd)
        self._wake()

    def _enqueue(self, bufs: tuple[bytes | memoryview, ...]) -> None:
        for b in bufs:
            self._queue.append(memoryview(b))
            self._queued += len(b)

    def _watch(self) -> None:
        if self.error is None:
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        with self._lock:
            try:
                n = self._sock.sendmsg(list(islice(self._queue, _IOV_BATCH)))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self._fail(err)
                return
            self._queued -= n
            while n:
                head = self._queue[0]
                if n >= len(head):
                    self._queue.popleft()
                    n -= len(head)
                else:
                    self._queue[0] = head[n:]
                    n = 0
            if not self._queue:
                self._watching = False
                self._loop.remove_writer(self._fd)
            if self._queued <= self._high_water:
                self._wake()

    def _fail(self, err: OSError) -> None:
        self.error = err
        self._close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None
