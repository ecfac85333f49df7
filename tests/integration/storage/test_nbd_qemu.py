"""pyhv's NBD server driven by QEMU's own NBD client (qemu-img, qemu-io): the interop proof."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pytest

from pyhv.errors import PyhvError
from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.image import DiskImage, Extent, ImageInfo
from pyhv.storage.nbd import NbdServer

pytestmark = pytest.mark.integration
MiB = 1 << 20
T = TypeVar("T")


class ServedImages:
    """An NbdServer on its own event loop thread, as the worker runs it, for blocking tests."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = NbdServer(sock)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def add(self, name: str, image: DiskImage, read_only: bool = False) -> str:
        async def add() -> None:
            self.server.add_export(name, image, read_only)

        self.call(add())
        return f"nbd+unix:///{name}?socket={self.sock}"

    def __enter__(self) -> ServedImages:
        self.thread.start()
        self.call(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()


class CountingImage(DiskImage):
    """Delegates to a real image and counts flushes (to see FUA and FLUSH reach fsync)."""

    def __init__(self, inner: DiskImage) -> None:
        super().__init__()
        self.inner = inner
        self.path, self.format, self.disk_type = inner.path, inner.format, inner.disk_type
        self.writable = inner.writable
        self.flushes = 0

    @property
    def size(self) -> int:
        return self.inner.size

    def read(self, offset: int, length: int) -> bytes:
        return self.inner.read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self.inner.write(offset, data)

    def flush(self) -> None:
        self.inner.flush()
        self.flushes += 1

    def extents(
        self, offset: int = 0, length: int | None = None, *, chain: bool = True
    ) -> list[Extent]:
        return self.inner.extents(offset, length, chain=chain)

    def info(self) -> ImageInfo:
        return self.inner.info()

    def _close(self) -> None:
        self.inner.close()


def sh(*argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if ok:
        assert out.returncode == 0, f"{argv}: {out.stderr}{out.stdout}"
    return out


def wait_until_listening(path: Path) -> None:
    for _ in range(600):  # a socket file exists a moment before anyone listens on it
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(path))
                return
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
    raise AssertionError(f"nothing listens on {path}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedImages]:
    with ServedImages(tmp_path / "nbd.sock") as s:
        yield s


def raw_image(path: Path, size: int = 16 * MiB) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def test_info_io_and_compare(served: ServedImages, tmp_path: Path) -> None:
    img = open_image(raw_image(tmp_path / "disk.raw"), writable=True)
    uri = served.add("disk", img)
    info = json.loads(sh("qemu-img", "info", "--output=json", uri).stdout)
    assert info["virtual-size"] == 16 * MiB
    sh(
        "qemu-io", "-f", "raw", uri,
        "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M", "-c", "flush",
        "-c", "write -P 0xcd 3M 64k", "-c", "discard 3M 64k", "-c", "write -z 5M 1M",
        "-c", "write -P 0x11 8191 3", "-c", "read -P 0x11 8191 3",
    )  # fmt: skip
    expected = raw_image(tmp_path / "expected.raw")
    sh(
        "qemu-io", "-f", "raw", str(expected),
        "-c", "write -P 0xab 0 1M", "-c", "write -P 0x11 8191 3",
    )  # fmt: skip
    assert (
        "identical"
        in sh("qemu-img", "compare", "-f", "raw", "-F", "raw", str(expected), uri).stdout
    )
    img.flush()
    assert (
        "identical"
        in sh("qemu-img", "compare", "-f", "raw", "-F", "raw", str(expected), str(img.path)).stdout
    )


def test_convert_into_and_out_of_the_export(served: ServedImages, tmp_path: Path) -> None:
    src = raw_image(tmp_path / "src.raw", 8 * MiB)
    sh("qemu-io", "-f", "raw", str(src), "-c", "write -P 0x5a 1M 3M", "-c", "write -P 0x01 7M 4k")
    uri = served.add("disk", open_image(raw_image(tmp_path / "disk.raw", 8 * MiB), writable=True))
    sh("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), uri)
    sh("qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), uri)
    out = tmp_path / "out.qcow2"
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", uri, str(out))
    sh("qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(src), str(out))


def test_block_status_through_qemu_img_map(served: ServedImages, tmp_path: Path) -> None:
    path = raw_image(tmp_path / "sparse.raw", 8 * MiB)
    sh("qemu-io", "-f", "raw", str(path), "-c", "write -P 1 2M 1M")
    uri = served.add("disk", open_image(path, writable=False), read_only=True)
    extents = json.loads(sh("qemu-img", "map", "--output=json", "-f", "raw", uri).stdout)
    data = [(e["start"], e["length"]) for e in extents if e["data"]]
    assert data == [(2 * MiB, MiB)]
    assert all(e["zero"] for e in extents if not e["data"])


def test_read_only_export_refuses_writes(served: ServedImages, tmp_path: Path) -> None:
    path = raw_image(tmp_path / "ro.raw", MiB)
    uri = served.add("ro", open_image(path, writable=False), read_only=True)
    sh("qemu-io", "-r", "-f", "raw", uri, "-c", "read -P 0 0 4k")
    out = sh("qemu-io", "-f", "raw", uri, "-c", "write -P 1 0 4k", ok=False)
    assert out.returncode != 0 or "failed" in out.stdout + out.stderr
    assert path.read_bytes() == bytes(MiB)


def test_fua_and_flush_reach_the_image(served: ServedImages, tmp_path: Path) -> None:
    img = CountingImage(open_image(raw_image(tmp_path / "disk.raw", MiB), writable=True))
    uri = served.add("disk", img)
    sh("qemu-io", "-f", "raw", "-t", "none", uri, "-c", "write -P 7 0 4k")
    plain = img.flushes  # qemu-io flushes on close
    sh("qemu-io", "-f", "raw", "-t", "none", uri, "-c", "write -f -P 7 0 4k", "-c", "flush")
    assert img.flushes >= plain + 2  # the FUA write and the flush, each an fsync


def test_two_concurrent_clients(served: ServedImages, tmp_path: Path) -> None:
    uri = served.add("disk", open_image(raw_image(tmp_path / "disk.raw", 8 * MiB), writable=True))
    procs = [
        subprocess.Popen(
            ["qemu-io", "-f", "raw", uri]
            + [a for i in range(32) for a in ("-c", f"write -P {n} {n * 4 + i // 8}M 128k")],
            stdout=subprocess.DEVNULL,
        )
        for n in (0, 1)
    ]
    assert [p.wait(120) for p in procs] == [0, 0]
    sh("qemu-io", "-f", "raw", uri, "-c", "read -P 1 4M 128k", "-c", "read -P 0 0 128k")


def test_garbage_client_does_not_hurt_the_server(served: ServedImages, tmp_path: Path) -> None:
    uri = served.add("disk", open_image(raw_image(tmp_path / "disk.raw", MiB), writable=True))
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(served.sock))
        s.recv(18)
        s.sendall(os.urandom(4096))
        s.settimeout(30)
        while s.recv(4096):  # the server answers (or not) and hangs up
            pass
    sh("qemu-img", "info", uri)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "opts", "qemu_checks"),
    [("vhdx", "subformat=dynamic", True), ("vpc", "subformat=dynamic", False)],
)
def test_serves_vhd_and_vhdx_images(
    served: ServedImages, tmp_path: Path, fmt: str, opts: str, qemu_checks: bool
) -> None:
    path = tmp_path / f"disk.{fmt}"
    sh("qemu-img", "create", "-f", fmt, "-o", opts, str(path), "16M")
    try:
        img = open_image(path, writable=True)
    except PyhvError as err:
        pytest.skip(f"pyhv does not open {fmt} yet: {err}")
    uri = served.add("disk", img)
    size = img.size
    writes = ["-c", "write -P 0x3c 0 3M", "-c", "write -P 0x4d 9M 512", "-c", "write -z 1M 1M"]
    sh("qemu-io", "-f", "raw", uri, *writes, "-c", "flush")
    expected = raw_image(tmp_path / "expected.raw", size)
    sh("qemu-io", "-f", "raw", str(expected), *writes)
    sh("qemu-img", "compare", "-f", "raw", "-F", "raw", str(expected), uri)
    served.call(served.server.remove_export("disk")).close()
    if qemu_checks:  # qemu-img check knows vhdx, not vpc
        sh("qemu-img", "check", "-f", fmt, str(path))
    sh("qemu-img", "compare", "-f", "raw", "-F", fmt, str(expected), str(path))


@pytest.mark.slow
def test_differencing_chain_is_served_whole(served: ServedImages, tmp_path: Path) -> None:
    base = tmp_path / "base.vhdx"
    sh("qemu-img", "create", "-f", "vhdx", "-o", "subformat=dynamic", str(base), "16M")
    sh("qemu-io", "-f", "vhdx", str(base), "-c", "write -P 0x61 0 2M", "-c", "write -P 0x62 8M 1M")
    base_before = base.read_bytes()
    child = tmp_path / "child.avhdx"
    try:
        create_image(child, CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(base)))
        img = open_image(child, writable=True)
    except PyhvError as err:
        pytest.skip(f"pyhv cannot make differencing VHDX yet: {err}")
    uri = served.add("disk", img)
    # base:allocation is the chain's view, exactly as the image describes it
    expected = [(e.offset, e.length) for e in img.extents(chain=True) if e.state == "data"]
    extents = json.loads(sh("qemu-img", "map", "--output=json", "-f", "raw", uri).stdout)
    assert [(e["start"], e["length"]) for e in extents if e["data"]] == expected
    sh("qemu-io", "-f", "raw", uri, "-c", "write -P 0x63 1M 2M", "-c", "flush")
    sh(
        "qemu-io", "-f", "raw", uri,
        "-c", "read -P 0x61 0 1M", "-c", "read -P 0x63 1M 2M", "-c", "read -P 0x62 8M 1M",
    )  # fmt: skip
    served.call(served.server.remove_export("disk")).close()
    assert base.read_bytes() == base_before  # writes went to the child only


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    """Provider-side durability: once qemu-io has its replies, kill -9 loses nothing."""
    path = raw_image(tmp_path / "disk.raw", 4 * MiB)
    sock = tmp_path / "nbd.sock"
    code = (
        "import asyncio, sys\n"
        "from pyhv.storage import open_image\n"
        "from pyhv.storage.nbd import NbdServer\n"
        "async def main():\n"
        "    server = NbdServer(sys.argv[1])\n"
        "    await server.start()\n"
        "    server.add_export('disk', open_image(sys.argv[2], writable=True), read_only=False)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(sock), str(path)])
    try:
        wait_until_listening(sock)
        uri = f"nbd+unix:///disk?socket={sock}"
        sh("qemu-io", "-f", "raw", uri, "-c", "write -P 0x77 1M 1M", "-c", "write -f -P 0x78 3M 4k")
    finally:
        proc.kill()
        proc.wait(30)
    data = path.read_bytes()
    assert data[MiB : 2 * MiB] == b"\x77" * MiB and data[3 * MiB : 3 * MiB + 4096] == b"\x78" * 4096


def qmp(mon: socket.socket, replies: BinaryIO, command: str, **arguments: Any) -> Any:
    """One QMP command on a connected monitor; skips events, returns ``return``."""
    mon.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
    while True:
        msg = json.loads(replies.readline())
        if "return" in msg:
            return msg["return"]
        assert "error" not in msg, msg


@contextlib.contextmanager
def qemu_with_nbd_disk(nbd_sock: Path, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """QEMU (paused, no guest) with the worker's disk wiring; yields a QMP ``execute``."""
    qmp_path = tmp_path / "qmp.sock"
    qemu = subprocess.Popen(
        [
            "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-nodefaults",
            "-display", "none", "-S", "-qmp", f"unix:{qmp_path},server=on,wait=off",
            "-blockdev",
            f"driver=nbd,node-name=d0,server.type=unix,server.path={nbd_sock},"
            "export=disk,reconnect-delay=10",
            "-device", "virtio-scsi-pci,id=scsi0",
            "-device", "scsi-hd,id=hd0,bus=scsi0.0,scsi-id=0,lun=0,drive=d0",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with socket.socket(socket.AF_UNIX) as mon:
            for _ in range(600):  # the socket file appears before QEMU listens on it
                try:
                    mon.connect(str(qmp_path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    assert qemu.poll() is None, qemu.communicate()[0]
                    time.sleep(0.05)
            replies = mon.makefile("rb")
            replies.readline()  # greeting
            qmp(mon, replies, "qmp_capabilities")
            yield lambda command, **args: qmp(mon, replies, command, **args)
            qmp(mon, replies, "quit")
        qemu.wait(60)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait(30)


def hmp_qemu_io(execute: Callable[..., Any], command: str) -> None:
    """Run a qemu-io command on the scsi-hd's block backend, inside QEMU."""
    execute("human-monitor-command", **{"command-line": f'qemu-io -d hd0 "{command}"'})


@pytest.mark.slow
def test_qemu_system_attaches_the_export_as_scsi_disk(served: ServedImages, tmp_path: Path) -> None:
    """The worker's wiring: NBD blockdev with reconnect-delay under scsi-hd on virtio-scsi."""
    img = open_image(raw_image(tmp_path / "disk.raw", 8 * MiB), writable=True)
    served.add("disk", img)
    with qemu_with_nbd_disk(served.sock, tmp_path) as execute:
        blocks = execute("query-block")
        assert [b["inserted"]["image"]["virtual-size"] for b in blocks] == [8 * MiB]
        hmp_qemu_io(execute, "write -P 0x42 64k 64k")
        hmp_qemu_io(execute, "flush")
        assert served.call(_stats(served))["write"]["bytes"] == 65536
    assert img.read(64 * 1024, 64 * 1024) == b"\x42" * 65536


@pytest.mark.slow
def test_qemu_reconnects_after_a_provider_restart(tmp_path: Path) -> None:
    """A restarted provider on the same socket: QEMU reconnects and goes on (reconnect-delay)."""
    path = raw_image(tmp_path / "disk.raw", 8 * MiB)
    sock = tmp_path / "nbd.sock"
    first = ServedImages(sock).__enter__()
    first.add("disk", open_image(path, writable=True))
    try:
        with qemu_with_nbd_disk(sock, tmp_path) as execute:
            hmp_qemu_io(execute, "write -P 0x51 0 64k")
            image = first.call(first.server.remove_export("disk"))
            image.close()
            first.__exit__()
            first = ServedImages(sock).__enter__()
            first.add("disk", open_image(path, writable=True))
            hmp_qemu_io(execute, "write -P 0x52 64k 64k")
            hmp_qemu_io(execute, "flush")
            assert first.call(_stats(first))["write"]["bytes"] == 65536
    finally:
        first.__exit__()
    data = path.read_bytes()
    assert data[: 64 * 1024] == b"\x51" * 65536 and data[64 * 1024 : 128 * 1024] == b"\x52" * 65536


async def _stats(served: ServedImages) -> dict[str, Any]:
    return served.server.stats("disk")
