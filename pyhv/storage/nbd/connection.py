"""One client connection of the NBD server: handshake, then the transmission loop.

# Ref: NBD protocol ``doc/proto.md``, "Transmission phase", "Structured replies", "Terminating
# the transmission phase".

The loop reads requests in order. A small read whose data the page cache holds
(``DiskImage.read_cached``) is answered right there on the loop: a thread hand-off costs more
than such a read. Profiled at 4 KiB and queue depth 16, most of the CPU went to waking threads
and passing the GIL; answered on the loop, the same reads went from 23-39k to 50-68k per
second (``bench/storage_provider.py``, raw and VHDX). Those replies collect while more
requests are already buffered and leave in one gathered send before the loop waits for the
client again (at queue depth 16, about one send per 16 replies).

Every other request starts in the I/O thread pool without waiting for the previous ones (QEMU
keeps up to 16 in flight); writes that arrived together go to one thread as one job, since
the hand-off costs more than a page cache write. The I/O thread that ran a request also sends
its reply, as one gathered send (header and data together) through the thread-safe
:class:`~.sockio.ReplyWriter`, so replies never interleave and never wait for the loop. The
loop then does the bookkeeping (counters, the export's swap gate) in the completion callback.
Replies may leave in any order, which NBD allows.

A request the client got wrong but that can be answered (bad range, read-only export) gets an
error reply; a stream we cannot trust any more (bad magic, oversized payload) ends that
connection, never the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections.abc import Callable
from functools import partial
from time import perf_counter_ns
from typing import cast

from pyhv.storage.nbd import commands
from pyhv.storage.nbd import protocol as p
from pyhv.storage.nbd.commands import COMMANDS, Command, Result
from pyhv.storage.nbd.export import Export
from pyhv.storage.nbd.handshake import ExportInfo, Negotiation
from pyhv.storage.nbd.iopool import IoPool
from pyhv.storage.nbd.sockio import ReplyWriter, SocketReader

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64  # per connection; QEMU sends at most 16
# Reads up to this size may be served on the loop. Larger ones go to the threads, where the
# copies (page cache → buffer → socket) run without the GIL, in parallel with the loop.
INLINE_READ_MAX = 64 * 1024
_BATCH_BUFFERS = 64  # inline replies are sent once this many buffers collected (2 per reply)
_BATCH_WRITES = 16  # writes collected for one thread hand-off at most
_WRITE_HIGH_WATER = 4 * p.MAX_PAYLOAD  # stop reading requests while this much reply is queued


class _Failed(Exception):
    """An image call failed and its error reply was sent; carries the finish time for stats."""

    def __init__(self, end: int) -> None:
        super().__init__(end)
        self.end = end


_Write = tuple[p.Request, bytes, int]  # request, payload, arrival time (ns)


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    TRANSMISSION = "transmission"
    CLOSED = "closed"


class Connection:
    """Serves one client until it disconnects, misbehaves, or the server removes its export.

    :param find_export: export by name (``""`` may mean the default), None when unknown.
    :param names: export names for NBD_OPT_LIST.
    """

    def __init__(
        self,
        sock: socket.socket,
        pool: IoPool,
        find_export: Callable[[str], Export | None],
        names: Callable[[], list[str]],
    ) -> None:
        loop = asyncio.get_running_loop()
        self._sock = sock
        self._reader = SocketReader(loop, sock)
        self._writer = ReplyWriter(loop, sock, _WRITE_HIGH_WATER)
        self._pool = pool
        self._find_export = find_export
        self._names = names
        self._phase = Phase.HANDSHAKE
        self._pending = 0  # requests handed to the pool, not yet counted out
        self._room = asyncio.Event()  # set while fewer than MAX_IN_FLIGHT are pending
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._structured = False
        self._block_status = False
        self._batch: list[bytes] = []  # inline replies not sent yet (header, data, …)
        self._writes: list[_Write] = []  # writes not handed to the pool yet
        self.export: Export | None = None
        self.task: asyncio.Task[None] | None = None  # set by the server, to cancel on removal
        self._debug = log.isEnabledFor(logging.DEBUG)  # checked once: -->/<-- lines per request

    def _set_phase(self, phase: Phase) -> None:
        log.debug("nbd connection: %s -> %s", self._phase.value, phase.value)
        self._phase = phase

    async def run(self) -> None:
        """Serve the client; returns when the connection is over. Cancellation propagates."""
        try:
            export = await self._handshake()
            if export is not None:
                await self._transmission(export)
        except (asyncio.IncompleteReadError, OSError):
            log.debug("nbd: client went away")
        except p.NbdProtocolError as err:
            log.warning("%s; closing the connection", err)
        finally:
            await self._finish()

    # -- handshake ---------------------------------------------------------------------------
    async def _handshake(self) -> Export | None:
        self._writer.send(p.pack_greeting())
        flags = p.parse_client_flags(await self._reader.readexactly(4))
        if not flags & p.NBD_FLAG_FIXED_NEWSTYLE:
            raise p.NbdProtocolError("nbd: client does not speak fixed newstyle")
        nego = Negotiation(self._lookup_info, self._names, bool(flags & p.NBD_FLAG_NO_ZEROES))
        while True:
            option, length = p.parse_option_header(await self._reader.readexactly(16))
            data = await self._reader.readexactly(length)
            outcome = nego.handle(option, data)
            log.debug("nbd --> option %d (%d bytes), close=%s", option, length, outcome.close)
            self._writer.send(outcome.reply)
            if outcome.close:
                return None
            if outcome.export is not None:
                export = self._find_export(outcome.export.name)
                if export is None:  # removed while we were negotiating
                    return None
                self._structured = nego.structured
                self._block_status = nego.block_status_for(outcome.export)
                return export
            await self._writer.drain()

    def _lookup_info(self, name: str) -> ExportInfo | None:
        export = self._find_export(name)
        return None if export is None else export.info

    # -- transmission ------------------------------------------------------------------------
    async def _transmission(self, export: Export) -> None:
        self._set_phase(Phase.TRANSMISSION)
        self.export = export
        export.connections.add(self)
        export.stats.connections += 1
        export.stats.connections_total += 1
        try:
            await self._serve_requests(export)
        finally:
            self._flush(export)

    async def _serve_requests(self, export: Export) -> None:
        """The request loop; it ``_flush``-es what it collected before anything it awaits."""
        reader = self._reader
        readexactly = reader.readexactly
        info = export.info
        debug = self._debug
        while True:
            if reader.buffered < p.REQUEST.size or self._writer.congested:
                self._flush(export)
            if self._writer.congested:
                await self._writer.drain()
            req = p.parse_request(await readexactly(p.REQUEST.size))
            self._pool.run_completions()  # the loop is awake anyway: do the bookkeeping now
            payload = b""
            if req.type == p.NBD_CMD_WRITE:
                if req.length > p.MAX_PAYLOAD:
                    raise p.NbdProtocolError(f"nbd: write of {req.length} bytes is over the limit")
                if reader.buffered < req.length:
                    self._flush(export)
                payload = await readexactly(req.length)
            elif req.type == p.NBD_CMD_DISC:
                return
            t0 = perf_counter_ns()
            if debug:
                log.debug("nbd %s --> %s", export.name, req)
            error = p.check_request(req, info.size, export.read_only, self._block_status)
            if error:
                self._send_error(req, error, "invalid request")
                continue
            if self._pending >= MAX_IN_FLIGHT:
                self._flush(export)
                self._room.clear()
                await self._pool.settle(self._room.wait())
            while not export.try_begin():
                self._flush(export)
                await export.wait_open()
            if req.type == p.NBD_CMD_READ and req.length <= INLINE_READ_MAX:
                try:
                    data = export.image.read_cached(req.offset, req.length)
                except BaseException:
                    export.end()
                    raise
                if data is not None:
                    export.end()
                    self._reply_inline(export, req, data, t0)
                    continue
            self._pending += 1
            self._idle.clear()
            if req.type == p.NBD_CMD_WRITE:
                self._writes.append((req, payload, t0))
                if len(self._writes) >= _BATCH_WRITES:
                    self._submit_writes(export)
                continue
            func, op = COMMANDS[req.type]
            done = partial(self._complete, export, req, op, t0)
            self._pool.submit(self._execute, (func, export, req, payload), done)

    def _reply_inline(self, export: Export, req: p.Request, data: bytes, t0: int) -> None:
        """Queue the reply of a read served on the loop; sent by :meth:`_flush`."""
        export.stats.record("read", req.length, perf_counter_ns() - t0)
        batch = self._batch
        batch.append(self._read_reply_header(req))
        batch.append(data)
        if len(batch) >= _BATCH_BUFFERS:
            self._send_batch()
        if self._debug:
            log.debug("nbd %s <-- handle %d: ok (cached)", export.name, req.handle)

    def _flush(self, export: Export) -> None:
        """Send the replies answered on the loop so far; hand the collected writes over."""
        self._send_batch()
        if self._writes:
            self._submit_writes(export)

    def _send_batch(self) -> None:
        if self._batch:
            self._writer.send(*self._batch)
            self._batch.clear()

    def _submit_writes(self, export: Export) -> None:
        """All collected writes as one pool job: one thread wake-up for the lot.

        Profiled at 4 KiB and queue depth 16, handing requests to threads one by one cost
        more CPU than the writes themselves. One thread then writes them in turn (a page
        cache write does not wait for the disk, and the GIL would serialise them anyway),
        each reply leaving as soon as its write returned.
        """
        writes, self._writes = self._writes, []
        done = partial(self._complete_writes, export, writes)
        self._pool.submit(self._execute_writes, (export, writes), done)

    def _execute_writes(self, export: Export, writes: list[_Write]) -> list[int | Exception]:
        """In an I/O thread: :meth:`_execute` each write; its finish time or its exception."""
        out: list[int | Exception] = []
        for req, payload, _ in writes:
            try:
                out.append(self._execute(commands.write, export, req, payload))
            except Exception as exc:  # accounted for by _complete, per write
                out.append(exc)
        return out

    def _complete_writes(
        self,
        export: Export,
        writes: list[_Write],
        results: list[int | Exception] | None,
        exc: BaseException | None,
    ) -> None:
        """Completion callback (loop thread): :meth:`_complete` for each write of the job."""
        for i, (req, _, t0) in enumerate(writes):
            result = exc if results is None else results[i]
            if isinstance(result, int):
                self._complete(export, req, "write", t0, result, None)
            else:
                self._complete(export, req, "write", t0, 0, result)

    def _read_reply_header(self, req: p.Request) -> bytes:
        if self._structured:
            return p.pack_read_chunk_header(req.handle, req.offset, req.length)
        return p.pack_simple_reply(0, req.handle)

    def _execute(self, func: Command, export: Export, req: p.Request, payload: bytes) -> int:
        """In an I/O thread: run the command, send its reply; returns the finish time (ns).

        The reply is sent only after the image call returned (see :mod:`.commands`).
        """
        try:
            result: Result = None
            if func is commands.flush:
                export.flush()
            elif req.type in p.MUTATING:
                try:
                    result = func(export.image, req, payload)
                finally:  # a failed write may have changed the image too
                    export.wrote()
            else:
                result = func(export.image, req, payload)
        except Exception as exc:  # any image failure becomes an NBD error reply
            end = perf_counter_ns()
            log.warning(
                "nbd: %s: request %d+%d failed: %s", export.name, req.offset, req.length, exc
            )
            self._send_error(req, p.errno_for(exc, req.type), str(exc))
            raise _Failed(end) from exc
        end = perf_counter_ns()
        self._send_result(req, result)
        if self._debug:
            log.debug("nbd %s <-- handle %d: ok", export.name, req.handle)
        return end

    def _send_result(self, req: p.Request, result: Result) -> None:
        if req.type == p.NBD_CMD_READ:
            self._writer.send(self._read_reply_header(req), cast(bytes, result))
        elif req.type == p.NBD_CMD_BLOCK_STATUS:
            descriptors = cast(list[tuple[int, int]], result)
            self._writer.send(
                p.pack_block_status_chunk(req.handle, p.BASE_ALLOCATION_ID, descriptors)
            )
        else:
            self._writer.send(p.pack_simple_reply(0, req.handle))

    def _complete(
        self, export: Export, req: p.Request, op: str, t0: int, end: int, exc: BaseException | None
    ) -> None:
        """Completion callback (loop thread): count the request out and account for it."""
        export.end()
        self._pending -= 1
        self._room.set()
        if self._pending == 0:
            self._idle.set()
        if isinstance(exc, _Failed):
            export.stats.record(op, 0, exc.end - t0, ok=False)
        elif exc is not None:
            # A bug while replying (or a BaseException): the client would wait forever for
            # this handle, so end the session; the reader sees EOF.
            log.error(
                "nbd: %s: request %d+%d aborted: %r", export.name, req.offset, req.length, exc
            )
            self._writer.close()
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        else:
            export.stats.record(op, req.length, end - t0)

    def _send_error(self, req: p.Request, error: int, message: str) -> None:
        if self._structured:
            self._writer.send(p.pack_error_chunk(req.handle, error, message))
        else:
            self._writer.send(p.pack_simple_reply(error, req.handle))

    # -- teardown ----------------------------------------------------------------------------
    async def _finish(self) -> None:
        """Let this connection's requests finish (they hold the image), then close the socket."""
        try:
            await self._pool.settle(self._idle.wait())
            await self._writer.drain(0)
        except OSError:
            pass  # the client is gone; nothing left to tell it
        finally:
            self._reader.close()
            self._writer.close()
            self._sock.close()
            if self.export is not None:
                self.export.connections.discard(self)
                self.export.stats.connections -= 1
            self._set_phase(Phase.CLOSED)
