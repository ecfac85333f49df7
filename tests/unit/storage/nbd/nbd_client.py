"""Test helpers for the NBD server: an in-memory DiskImage and a small asyncio NBD client."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyhv.storage.image import (
    DiskImage,
    DiskType,
    Extent,
    ExtentState,
    ImageFormat,
    ImageInfo,
    merge_extents,
)
from pyhv.storage.nbd import NbdServer
from pyhv.storage.nbd import protocol as p


# -- the client's half of the wire format, written apart from the server's (an independent check)
def pack_option(option: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", p.IHAVEOPT, option, len(data)) + data


def parse_option_reply(buf: bytes) -> tuple[int, int, int]:
    """``(option, reply type, length)`` of an option reply header."""
    magic, option, reply_type, length = struct.unpack(">QIII", buf)
    assert magic == 0x0003E889045565A9, hex(magic)
    return option, reply_type, length


def pack_info_request(name: str, info_types: Iterable[int] = ()) -> bytes:
    types = list(info_types)
    raw = name.encode()
    return struct.pack(f">I{len(raw)}sH{len(types)}H", len(raw), raw, len(types), *types)


def pack_meta_context_request(name: str, queries: Iterable[str]) -> bytes:
    raw = name.encode()
    qs = [q.encode() for q in queries]
    out = struct.pack(f">I{len(raw)}sI", len(raw), raw, len(qs))
    return out + b"".join(struct.pack(f">I{len(q)}s", len(q), q) for q in qs)


def pack_request(flags: int, cmd: int, handle: int, offset: int, length: int) -> bytes:
    return struct.pack(">IHHQQI", 0x25609513, flags, cmd, handle, offset, length)


def parse_simple_reply(buf: bytes) -> tuple[int, int]:
    """``(error, handle)``."""
    magic, error, handle = struct.unpack(">IIQ", buf)
    assert magic == 0x67446698, hex(magic)
    return error, handle


def parse_chunk_header(buf: bytes) -> tuple[int, int, int, int]:
    """``(flags, type, handle, length)`` of a structured reply chunk."""
    magic, flags, rtype, handle, length = struct.unpack(">IHHQI", buf)
    assert magic == 0x668E33EF, hex(magic)
    return flags, rtype, handle, length


def parse_block_status_payload(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """``(context id, [(length, status), …])``."""
    assert len(data) >= 4 and (len(data) - 4) % 8 == 0, len(data)
    (context_id,) = struct.unpack_from(">I", data)
    return context_id, [(n, st) for n, st in struct.iter_unpack(">II", data[4:])]


async def eventually(predicate: Callable[[], bool], timeout: float = 30) -> None:
    """Wait until ``predicate()`` holds: counters are updated just after the reply is sent."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


class MemImage(DiskImage):
    """A disk in memory that counts flushes; ``gate`` (when cleared) blocks reads and writes."""

    format = ImageFormat.RAW
    disk_type = DiskType.FIXED

    def __init__(self, size: int, writable: bool = True, fill: int = 0) -> None:
        super().__init__()
        self.path = Path(f"mem-{id(self):x}")
        self.writable = writable
        self.data = bytearray([fill]) * size
        self.flushes = 0
        self.discarded: list[tuple[int, int]] = []
        self.zeroed: list[tuple[int, int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when an I/O call is inside (for swap tests)
        self.zero_ranges: list[tuple[int, int]] = []  # what extents() reports as ZERO

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        self.check_range(offset, length)
        self.entered.set()
        self.gate.wait(30)
        return bytes(self.data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        self.check_range(offset, len(data))
        self.entered.set()
        self.gate.wait(30)
        self.data[offset : offset + len(data)] = data

    def flush(self) -> None:
        self.flushes += 1

    def discard(self, offset: int, length: int) -> None:
        self.check_range(offset, length)
        self.discarded.append((offset, length))

    def write_zeroes(self, offset: int, length: int) -> None:
        self.check_range(offset, length)
        self.zeroed.append((offset, length))
        self.data[offset : offset + length] = bytes(length)

    def extents(
        self, offset: int = 0, length: int | None = None, *, chain: bool = True
    ) -> list[Extent]:
        length = self.size - offset if length is None else length
        out, pos = [], 0
        for start, n in sorted(self.zero_ranges):
            out.append(Extent(pos, start - pos, ExtentState.DATA))
            out.append(Extent(start, n, ExtentState.ZERO))
            pos = start + n
        out.append(Extent(pos, self.size - pos, ExtentState.DATA))
        return [e for e in merge_extents(out) if e.end > offset and e.offset < offset + length]

    def info(self) -> ImageInfo:
        return ImageInfo(
            str(self.path), self.format, self.disk_type, self.size, self.size, 0, 0, 512, 512, ""
        )

    def _close(self) -> None:
        pass


@dataclass
class Reply:
    error: int
    handle: int
    data: bytes = b""
    descriptors: list[tuple[int, int]] = field(default_factory=list)
    context_id: int = 0


class NbdClient:
    """Speaks just enough NBD to drive the server from tests; one reply per ``reply()``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.size = 0
        self.flags = 0
        self.structured = False
        self._next = 1
        self._lengths: dict[int, int] = {}

    @classmethod
    async def connect(cls, path: Path | str) -> NbdClient:
        reader, writer = await asyncio.open_unix_connection(str(path))
        return cls(reader, writer)

    async def greet(
        self, client_flags: int = p.NBD_FLAG_FIXED_NEWSTYLE | p.NBD_FLAG_NO_ZEROES
    ) -> int:
        magic, opt, flags = struct.unpack(">QQH", await self.reader.readexactly(18))
        assert (magic, opt) == (p.NBDMAGIC, p.IHAVEOPT)
        self.writer.write(struct.pack(">I", client_flags))
        return int(flags)

    async def option(self, option: int, data: bytes = b"") -> list[tuple[int, bytes]]:
        """Send an option; return every (reply type, payload) up to ACK or an error."""
        self.writer.write(pack_option(option, data))
        out = []
        while True:
            opt, rtype, length = parse_option_reply(await self.reader.readexactly(20))
            assert opt == option
            payload = await self.reader.readexactly(length)
            out.append((rtype, payload))
            if rtype == p.NBD_REP_ACK or rtype & (1 << 31):
                return out

    async def go(self, name: str = "disk", structured: bool = False, meta: bool = False) -> None:
        await self.greet()
        if structured:
            assert (await self.option(p.NBD_OPT_STRUCTURED_REPLY))[-1][0] == p.NBD_REP_ACK
            self.structured = True
        if meta:
            req = pack_meta_context_request(name, [p.BASE_ALLOCATION])
            assert (await self.option(p.NBD_OPT_SET_META_CONTEXT, req))[-1][0] == p.NBD_REP_ACK
        replies = await self.option(p.NBD_OPT_GO, pack_info_request(name, [p.NBD_INFO_BLOCK_SIZE]))
        assert replies[-1][0] == p.NBD_REP_ACK, replies
        for rtype, payload in replies:
            if rtype == p.NBD_REP_INFO and struct.unpack(">H", payload[:2])[0] == p.NBD_INFO_EXPORT:
                _, self.size, self.flags = struct.unpack(">HQH", payload)

    def send(
        self, cmd: int, offset: int = 0, length: int = 0, flags: int = 0, payload: bytes = b""
    ) -> int:
        handle = self._next
        self._next += 1
        self._lengths[handle] = length if cmd == p.NBD_CMD_READ else 0
        self.writer.write(pack_request(flags, cmd, handle, offset, length) + payload)
        return handle

    async def reply(self) -> Reply:
        head = await self.reader.readexactly(4)
        (magic,) = struct.unpack(">I", head)
        if magic == p.NBD_SIMPLE_REPLY_MAGIC:
            error, handle = parse_simple_reply(head + await self.reader.readexactly(12))
            n = self._lengths.pop(handle, 0) if not error else 0
            return Reply(error, handle, await self.reader.readexactly(n) if n else b"")
        flags, rtype, handle, length = parse_chunk_header(head + await self.reader.readexactly(16))
        assert flags & p.NBD_REPLY_FLAG_DONE  # the server sends one chunk per reply
        payload = await self.reader.readexactly(length)
        self._lengths.pop(handle, None)
        if rtype == p.NBD_REPLY_TYPE_OFFSET_DATA:
            return Reply(0, handle, payload[8:])
        if rtype == p.NBD_REPLY_TYPE_ERROR:
            return Reply(struct.unpack(">I", payload[:4])[0], handle)
        assert rtype == p.NBD_REPLY_TYPE_BLOCK_STATUS, rtype
        ctx, descriptors = parse_block_status_payload(payload)
        return Reply(0, handle, descriptors=descriptors, context_id=ctx)

    async def call(
        self, cmd: int, offset: int = 0, length: int = 0, flags: int = 0, payload: bytes = b""
    ) -> Reply:
        handle = self.send(cmd, offset, length, flags, payload)
        r = await self.reply()
        assert r.handle == handle
        return r

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def run(test: Callable[[NbdServer, Path], Awaitable[None]], tmp_path: Path) -> None:
    """Start a server on ``tmp_path/nbd.sock``, run ``test`` and close the server."""

    async def main() -> None:
        sock = tmp_path / "nbd.sock"
        async with NbdServer(sock, io_threads=4) as server:
            await asyncio.wait_for(test(server, sock), 60)

    asyncio.run(main())


async def client(sock: Path, **kw: Any) -> NbdClient:
    """A client that has connected and chosen its export."""
    c = await NbdClient.connect(sock)
    await c.go(**kw)
    return c
