"""NbdServer over a real unix socket, with in-memory images and a small test client (no QEMU)."""

from __future__ import annotations

import asyncio
import logging
import stat
import struct
from pathlib import Path
from typing import Any

import pytest
from nbd_client import (
    MemImage,
    NbdClient,
    client,
    eventually,
    pack_info_request,
    pack_option,
    pack_request,
    run,
)

from pyhv.errors import (
    ConfigError,
    ConflictError,
    NbdError,
    NotFoundError,
    StateError,
    StorageError,
)
from pyhv.storage.nbd import NbdServer
from pyhv.storage.nbd import protocol as p
from pyhv.storage.nbd.connection import MAX_IN_FLIGHT

SIZE = 1 << 20


def test_socket_is_private_and_flags_advertised(tmp_path: Path) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        server.add_export("disk", MemImage(SIZE), read_only=False)
        c = await client(sock)
        assert c.size == SIZE
        for flag in (p.NBD_FLAG_SEND_FLUSH, p.NBD_FLAG_SEND_FUA, p.NBD_FLAG_SEND_TRIM):
            assert c.flags & flag
        assert c.flags & p.NBD_FLAG_SEND_WRITE_ZEROES and c.flags & p.NBD_FLAG_CAN_MULTI_CONN
        assert not c.flags & p.NBD_FLAG_READ_ONLY
        await c.close()

    run(t, tmp_path)


@pytest.mark.parametrize("structured", [False, True])
def test_write_read_flush_fua(tmp_path: Path, structured: bool) -> None:
    image = MemImage(SIZE)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock, structured=structured)
        assert (await c.call(p.NBD_CMD_WRITE, 4096, 8192, payload=b"\xab" * 8192)).error == 0
        assert image.data[4096 : 4096 + 8192] == b"\xab" * 8192 and image.flushes == 0
        r = await c.call(p.NBD_CMD_READ, 4000, 200)
        assert r.error == 0 and r.data == bytes(96) + b"\xab" * 104
        await c.call(p.NBD_CMD_WRITE, 0, 512, p.NBD_CMD_FLAG_FUA, b"x" * 512)
        assert image.flushes == 1  # FUA reached flush before the reply
        await c.call(p.NBD_CMD_FLUSH)
        assert image.flushes == 2
        await eventually(lambda: server.stats("disk")["flush"]["ops"] == 1)
        stats = server.stats("disk")
        assert stats["write"]["ops"] == 2 and stats["write"]["bytes"] == 8192 + 512
        assert stats["read"]["bytes"] == 200 and stats["flush"]["ops"] == 1
        assert stats["connections"] == 1
        await c.close()

    run(t, tmp_path)


def test_a_flush_with_nothing_written_since_the_last_one_is_skipped(tmp_path: Path) -> None:
    """QEMU flushes every disk when it stops a guest; a checkpoint flushes them just before
    through the server, so that flush must find them clean, and any write makes it real."""
    image, child = MemImage(SIZE), MemImage(SIZE)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock)
        assert (await c.call(p.NBD_CMD_FLUSH)).error == 0
        assert image.flushes == 1  # a new export's first flush is real
        assert (await c.call(p.NBD_CMD_FLUSH)).error == 0
        assert image.flushes == 1
        await c.call(p.NBD_CMD_WRITE, 0, 512, payload=b"x" * 512)
        await c.call(p.NBD_CMD_FLUSH)
        assert image.flushes == 2
        await c.call(p.NBD_CMD_TRIM, 0, 65536)
        await server.flush("disk")  # the worker's own flush counts for the clients
        await c.call(p.NBD_CMD_FLUSH)
        assert image.flushes == 3
        await server.swap_image("disk", child)
        await c.call(p.NBD_CMD_FLUSH)
        assert child.flushes == 1 and image.flushes == 3  # a swapped-in image is flushed
        await eventually(lambda: server.stats("disk")["flush"]["ops"] == 5)
        await c.close()

    run(t, tmp_path)


@pytest.mark.parametrize("structured", [False, True])
def test_errors_are_replies_not_disconnects(tmp_path: Path, structured: bool) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", MemImage(SIZE), read_only=False)
        c = await client(sock, structured=structured)
        assert (await c.call(p.NBD_CMD_READ, SIZE - 10, 20)).error == p.NBD_EINVAL
        assert (await c.call(p.NBD_CMD_WRITE, SIZE, 512, payload=bytes(512))).error == p.NBD_ENOSPC
        assert (await c.call(p.NBD_CMD_WRITE_ZEROES, SIZE - 1, 2)).error == p.NBD_ENOSPC
        assert (await c.call(p.NBD_CMD_TRIM, SIZE, 1)).error == p.NBD_EINVAL
        assert (await c.call(42)).error == p.NBD_EINVAL
        assert (await c.call(p.NBD_CMD_BLOCK_STATUS, 0, 512)).error == p.NBD_EINVAL  # no context
        assert (await c.call(p.NBD_CMD_READ, 0, 16)).data == bytes(16)  # still serving
        await c.close()

    run(t, tmp_path)


def test_read_only_export_refuses_writes(tmp_path: Path) -> None:
    image = MemImage(SIZE, writable=False, fill=7)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=True)
        c = await client(sock)
        assert c.flags & p.NBD_FLAG_READ_ONLY and not c.flags & p.NBD_FLAG_SEND_TRIM
        assert (await c.call(p.NBD_CMD_WRITE, 0, 4, payload=b"abcd")).error == p.NBD_EPERM
        assert (await c.call(p.NBD_CMD_TRIM, 0, 4096)).error == p.NBD_EPERM
        assert (await c.call(p.NBD_CMD_WRITE_ZEROES, 0, 4096)).error == p.NBD_EPERM
        assert (await c.call(p.NBD_CMD_READ, 0, 4)).data == b"\x07" * 4
        await c.close()

    run(t, tmp_path)
    assert image.data == bytearray([7]) * SIZE and image.discarded == []


def test_writable_export_of_read_only_image_is_refused(tmp_path: Path) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        with pytest.raises(ConfigError, match="read-only"):
            server.add_export("disk", MemImage(SIZE, writable=False), read_only=False)

    run(t, tmp_path)


def test_trim_and_write_zeroes(tmp_path: Path) -> None:
    image = MemImage(SIZE, fill=1)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock)
        await c.call(p.NBD_CMD_TRIM, 0, 65536, p.NBD_CMD_FLAG_FUA)
        assert image.discarded == [(0, 65536)] and image.flushes == 1
        await c.call(p.NBD_CMD_WRITE_ZEROES, 65536, 4096)
        assert image.zeroed == [(65536, 4096)]  # may punch holes
        await c.call(p.NBD_CMD_WRITE_ZEROES, 131072, 3 << 20 >> 2, p.NBD_CMD_FLAG_NO_HOLE)
        assert image.zeroed == [(65536, 4096)]  # NO_HOLE: real zeros through write()
        assert image.data[131072 : 131072 + (3 << 18)] == bytes(3 << 18)
        await eventually(lambda: server.stats("disk")["write_zeroes"]["ops"] == 2)
        assert server.stats("disk")["trim"]["ops"] == 1
        await c.close()

    run(t, tmp_path)


def test_block_status(tmp_path: Path) -> None:
    image = MemImage(SIZE)
    image.zero_ranges = [(65536, 65536)]
    hole = p.NBD_STATE_HOLE | p.NBD_STATE_ZERO

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock, structured=True, meta=True)
        r = await c.call(p.NBD_CMD_BLOCK_STATUS, 4096, 200000)
        assert r.context_id == p.BASE_ALLOCATION_ID
        assert r.descriptors == [(61440, 0), (65536, hole), (200000 - 61440 - 65536, 0)]
        r = await c.call(p.NBD_CMD_BLOCK_STATUS, 4096, 200000, p.NBD_CMD_FLAG_REQ_ONE)
        assert r.descriptors == [(61440, 0)]
        await c.close()

    run(t, tmp_path)


def test_pipelined_requests_all_answered(tmp_path: Path) -> None:
    image = MemImage(SIZE)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock, structured=True)
        handles = {}
        for i in range(64):  # more than the per-connection limit of requests in flight
            data = bytes([i]) * 4096
            handles[c.send(p.NBD_CMD_WRITE, i * 4096, 4096, payload=data)] = None
        for _ in range(64):
            r = await c.reply()
            assert r.error == 0
            handles.pop(r.handle)
        reads = {c.send(p.NBD_CMD_READ, i * 4096, 4096): i for i in range(64)}
        for _ in range(64):
            r = await c.reply()
            assert r.data == bytes([reads.pop(r.handle)]) * 4096
        assert not handles and not reads
        await c.close()

    run(t, tmp_path)


def test_writes_handed_over_together_are_answered_one_by_one(tmp_path: Path) -> None:
    """Writes that arrive together run as one pool job; each still gets its own outcome."""

    class FailsAtBlock3(MemImage):
        def write(self, offset: int, data: bytes) -> None:
            if offset == 3 * 4096:
                raise StorageError("disk: write failed: Input/output error")
            super().write(offset, data)

    image = FailsAtBlock3(SIZE)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock, structured=True)
        sent = {
            c.send(p.NBD_CMD_WRITE, i * 4096, 4096, payload=bytes([i + 1]) * 4096): i
            for i in range(8)
        }
        errors = {}
        for _ in range(8):
            r = await c.reply()
            errors[sent.pop(r.handle)] = r.error
        assert errors == {i: p.NBD_EIO if i == 3 else 0 for i in range(8)}
        assert image.data[7 * 4096 : 8 * 4096] == b"\x08" * 4096
        await eventually(lambda: server.stats("disk")["write"]["ops"] == 8)
        stats = server.stats("disk")["write"]
        assert stats["errors"] == 1 and stats["bytes"] == 7 * 4096
        assert (await c.call(p.NBD_CMD_READ, 3 * 4096, 4)).data == bytes(4)  # still serving
        await c.close()

    run(t, tmp_path)


def test_two_clients_share_the_export(tmp_path: Path) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", MemImage(SIZE), read_only=False)
        a, b = await client(sock), await client(sock, structured=True)
        await a.call(p.NBD_CMD_WRITE, 0, 3, payload=b"abc")
        assert (await b.call(p.NBD_CMD_READ, 0, 3)).data == b"abc"
        assert server.stats("disk")["connections"] == 2
        await a.close()
        await b.close()

    run(t, tmp_path)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xde\xad\xbe\xef" * 7,  # bad request magic
        pack_request(0, p.NBD_CMD_WRITE, 1, 0, p.MAX_PAYLOAD + 1),  # oversized payload
    ],
)
def test_garbage_in_transmission_closes_only_that_connection(
    tmp_path: Path, garbage: bytes
) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", MemImage(SIZE), read_only=False)
        bad = await client(sock)
        bad.writer.write(garbage)
        assert await bad.reader.read() == b""  # the server hung up
        good = await client(sock)
        assert (await good.call(p.NBD_CMD_READ, 0, 8)).error == 0
        await good.close()
        await bad.close()

    run(t, tmp_path)


@pytest.mark.parametrize(
    "after_greeting",
    [
        struct.pack(">I", 0),  # not fixed newstyle
        struct.pack(">I", 1) + b"not an option header",
        struct.pack(">I", 1) + struct.pack(">QII", p.IHAVEOPT, p.NBD_OPT_GO, 1 << 30),
        struct.pack(">I", 1) + pack_option(p.NBD_OPT_EXPORT_NAME, b"nope"),
    ],
)
def test_bad_handshakes_close_the_connection(tmp_path: Path, after_greeting: bytes) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", MemImage(SIZE), read_only=False)
        reader, writer = await asyncio.open_unix_connection(str(sock))
        await reader.readexactly(18)
        writer.write(after_greeting)
        await reader.read()  # until EOF: the server closed it
        writer.close()
        ok = await client(sock)
        await ok.close()

    run(t, tmp_path)


def test_disconnect_and_abort(tmp_path: Path) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", MemImage(SIZE), read_only=False)
        c = await client(sock)
        h = c.send(p.NBD_CMD_READ, 0, 4)
        c.send(p.NBD_CMD_DISC)
        assert (await c.reply()).handle == h  # answered before the close
        assert await c.reader.read() == b""
        c2 = await NbdClient.connect(sock)
        await c2.greet()
        assert (await c2.option(p.NBD_OPT_ABORT))[-1][0] == p.NBD_REP_ACK
        assert await c2.reader.read() == b""

    run(t, tmp_path)


def test_image_failure_is_eio(tmp_path: Path) -> None:
    class Broken(MemImage):
        def read(self, offset: int, length: int) -> bytes:
            raise StorageError("disk: read failed: Input/output error")

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", Broken(SIZE), read_only=False)
        for structured in (False, True):
            c = await client(sock, structured=structured)
            assert (await c.call(p.NBD_CMD_READ, 0, 512)).error == p.NBD_EIO
            await c.close()
        await eventually(lambda: server.stats("disk")["read"]["errors"] == 2)

    run(t, tmp_path)


def test_swap_image_waits_for_requests_in_flight(tmp_path: Path) -> None:
    old, new = MemImage(SIZE, fill=1), MemImage(SIZE, fill=2)
    old.gate.clear()

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", old, read_only=False)
        c = await client(sock)
        first = c.send(p.NBD_CMD_READ, 0, 4)
        await asyncio.to_thread(old.entered.wait, 30)  # the read is inside the old image
        swap = asyncio.create_task(server.swap_image("disk", new))
        await asyncio.sleep(0.05)
        assert not swap.done()  # blocked by the request in flight
        second = c.send(p.NBD_CMD_READ, 0, 4)  # held at the gate
        old.gate.set()
        r1, r2 = await c.reply(), await c.reply()
        assert (r1.handle, r1.data) == (first, b"\x01" * 4)
        assert (r2.handle, r2.data) == (second, b"\x02" * 4)
        assert await swap is old
        await c.close()

    run(t, tmp_path)


def test_swap_image_of_another_size_is_refused(tmp_path: Path) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", MemImage(SIZE), read_only=False)
        with pytest.raises(NbdError, match="size"):
            await server.swap_image("disk", MemImage(SIZE * 2))
        with pytest.raises(NbdError, match="read-only"):
            await server.swap_image("disk", MemImage(SIZE, writable=False))

    run(t, tmp_path)


def test_remove_export_closes_its_connections(tmp_path: Path) -> None:
    image = MemImage(SIZE)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        server.add_export("other", MemImage(SIZE), read_only=False)
        c = await client(sock)
        other = await client(sock, name="other")
        await c.call(p.NBD_CMD_WRITE, 0, 1, payload=b"z")
        assert await server.remove_export("disk") is image
        assert await c.reader.read() == b""
        assert (await other.call(p.NBD_CMD_READ, 0, 1)).error == 0  # untouched
        c2 = await NbdClient.connect(sock)
        await c2.greet()
        replies = await c2.option(p.NBD_OPT_GO, pack_info_request("disk"))
        assert replies[-1][0] == p.NBD_REP_ERR_UNKNOWN
        with pytest.raises(NotFoundError):
            server.stats("disk")
        await other.close()
        await c2.close()

    run(t, tmp_path)


def test_default_export_and_list(tmp_path: Path) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("only", MemImage(SIZE), read_only=False)
        c = await client(sock, name="")  # "" means the only export
        assert c.size == SIZE
        c2 = await NbdClient.connect(sock)
        await c2.greet()
        listed = await c2.option(p.NBD_OPT_LIST)
        assert [d[4:] for t, d in listed if t == p.NBD_REP_SERVER] == [b"only"]
        await c.close()
        await c2.close()

    run(t, tmp_path)


def test_lifecycle_errors(tmp_path: Path) -> None:
    async def t(server: NbdServer, sock: Path) -> None:
        with pytest.raises(StateError, match="running"):
            await server.start()
        server.add_export("disk", MemImage(SIZE), read_only=False)
        with pytest.raises(ConflictError):
            server.add_export("disk", MemImage(SIZE), read_only=False)
        with pytest.raises(ConfigError, match="invalid export name"):
            server.add_export("", MemImage(SIZE), read_only=False)
        with pytest.raises(NotFoundError):
            await server.remove_export("nope")

    run(t, tmp_path)


def test_stale_socket_is_replaced_other_files_are_not(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "nbd.sock"
        first = NbdServer(path)
        await first.start()
        second = NbdServer(path)  # as after a crash: the old socket file is still there
        await second.start()
        await second.close()
        await first.close()
        await second.close()  # idempotent
        with pytest.raises(StateError, match="closed"):
            second.add_export("disk", MemImage(SIZE), read_only=False)
        path.write_text("not a socket")
        with pytest.raises(NbdError, match="not a socket"):
            await NbdServer(path).start()

    asyncio.run(main())


def test_debug_log_has_a_line_per_request_and_reply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pyhv.storage.nbd")

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", MemImage(SIZE), read_only=False)
        c = await client(sock)
        await c.call(p.NBD_CMD_READ, 0, 512)
        await eventually(lambda: "<-- handle 1: ok" in caplog.text)
        await c.close()

    run(t, tmp_path)
    assert "nbd disk --> Request(flags=0, type=0, handle=1, offset=0, length=512)" in caplog.text


def test_a_bug_costs_one_connection_not_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = p.check_request
    calls = []

    def buggy(*args: Any) -> int:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return real(*args)

    monkeypatch.setattr(p, "check_request", buggy)

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", MemImage(SIZE), read_only=False)
        first = await client(sock)
        first.send(p.NBD_CMD_READ, 0, 8)
        assert await first.reader.read() == b""  # dropped
        second = await client(sock)
        assert (await second.call(p.NBD_CMD_READ, 0, 8)).error == 0
        await first.close()
        await second.close()

    run(t, tmp_path)
    assert "connection failed" in caplog.text


def test_more_requests_than_the_in_flight_limit(tmp_path: Path) -> None:
    image = MemImage(SIZE, fill=9)
    image.gate.clear()  # every read blocks until the gate opens

    async def t(server: NbdServer, sock: Path) -> None:
        server.add_export("disk", image, read_only=False)
        c = await client(sock, structured=True)
        handles = {c.send(p.NBD_CMD_READ, i * 512, 512) for i in range(MAX_IN_FLIGHT + 6)}
        await asyncio.sleep(0.1)  # the server holds the excess behind its limit
        image.gate.set()
        for _ in handles.copy():
            r = await c.reply()
            assert r.data == b"\x09" * 512
            handles.remove(r.handle)
        await c.close()

    run(t, tmp_path)
