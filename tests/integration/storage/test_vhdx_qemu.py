"""VHDX interop with qemu-img/qemu-io 7.2: images pyhv writes, images qemu writes, dirty logs."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from pyhv.storage.image import CreateSpec, DiskType
from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.storage.vhdx import bat as batlib
from pyhv.storage.vhdx import header as hdr
from pyhv.storage.vhdx import log as loglib
from pyhv.storage.vhdx import structs as s
from pyhv.units import GiB, MiB

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed"),
]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)


def qemu_virtual_size(path: Path) -> int:
    out = run("qemu-img", "info", "-f", "vhdx", "--output=json", path)
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout)["virtual-size"])


def assert_qemu_clean(path: Path) -> None:
    out = run("qemu-img", "check", "-f", "vhdx", path)
    assert out.returncode == 0 and "No errors" in out.stdout, out.stdout + out.stderr


def assert_same_as_raw(path: Path, raw: Path) -> None:
    out = run("qemu-img", "compare", "-f", "vhdx", "-F", "raw", path, raw)
    assert out.returncode == 0 and "identical" in out.stdout, out.stdout + out.stderr


def write_random(img: VhdxImage, raw: Path, seed: int, count: int, max_len: int) -> None:
    """Same random writes into the image and into a sparse raw model file."""
    rnd = random.Random(seed)
    with open(raw, "r+b") as model:
        for _ in range(count):
            length = rnd.randrange(1, max_len)
            off = rnd.randrange(0, img.size - length)
            data = rnd.randbytes(length)
            img.write(off, data)
            model.seek(off)
            model.write(data)


def sparse_raw(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


CASES = [
    (DiskType.DYNAMIC, 1 * MiB, None),
    (DiskType.DYNAMIC, 1_000_001, 1 * MiB),
    (DiskType.DYNAMIC, 100 * MiB, 2 * MiB),
    (DiskType.DYNAMIC, 100 * MiB, 256 * MiB),
    (DiskType.FIXED, 1 * MiB, 1 * MiB),
    (DiskType.FIXED, 100 * MiB, 8 * MiB),
    pytest.param(DiskType.DYNAMIC, 1 * GiB, None, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("disk_type", "size", "block"), CASES)
def test_pyhv_images_are_sound_for_qemu(
    tmp_path: Path, disk_type: DiskType, size: int, block: int | None
) -> None:
    path = tmp_path / "d.vhdx"
    FORMAT.create(path, CreateSpec(size=size, disk_type=disk_type, block_size=block), None)
    expected = -(-size // 512) * 512
    assert qemu_virtual_size(path) == expected
    assert_qemu_clean(path)
    raw = sparse_raw(tmp_path / "d.raw", expected)
    with VhdxImage(path, writable=True) as img:
        write_random(img, raw, seed=size, count=25, max_len=min(size // 4, 3 * MiB))
    assert_qemu_clean(path)
    assert_same_as_raw(path, raw)


QEMU_CASES = [
    ("dynamic", "on", "1M"),
    ("dynamic", "off", "8M"),
    ("dynamic", "on", "256M"),
    ("fixed", "on", "2M"),
    ("fixed", "off", "1M"),
    ("dynamic", "off", "1M,log_size=4M"),  # BAT at 5 MiB, metadata at 6 MiB
]


@pytest.mark.parametrize(("subformat", "zero", "block"), QEMU_CASES)
def test_qemu_images_read_and_written_by_pyhv(
    tmp_path: Path, subformat: str, zero: str, block: str
) -> None:
    path = tmp_path / "q.vhdx"
    size = 40 * MiB
    opts = f"subformat={subformat},block_state_zero={zero},block_size={block}"
    assert run("qemu-img", "create", "-f", "vhdx", "-o", opts, path, str(size)).returncode == 0
    raw = sparse_raw(tmp_path / "q.raw", size)
    rnd = random.Random(block)
    with open(raw, "r+b") as model:
        for i in range(12):
            off = rnd.randrange(0, size // 512 - 300) * 512
            length = rnd.randrange(1, 300) * 512
            pattern = 0x10 + i
            out = run("qemu-io", "-f", "vhdx", "-c", f"write -P {pattern} {off} {length}", path)
            assert out.returncode == 0, out.stderr
            model.seek(off)
            model.write(bytes([pattern]) * length)
    assert FORMAT.check(path, repair=False) == []
    with VhdxImage(path, writable=False) as img:
        assert img.size == size
        assert img.read(0, size) == raw.read_bytes()
    with VhdxImage(path, writable=True) as img:
        write_random(img, raw, seed=7, count=15, max_len=2 * MiB)
    assert_qemu_clean(path)
    assert_same_as_raw(path, raw)


def test_pending_log_reads_like_qemu_replay(tmp_path: Path) -> None:
    path = tmp_path / "dirty.vhdx"
    FORMAT.create(path, CreateSpec(size=16 * MiB, block_size=1 * MiB), None)
    with VhdxImage(path, writable=True) as img:
        img.write(0, b"\x01" * (3 * MiB))
    img = VhdxImage(path, writable=True)
    img.write(5 * MiB + 4096, b"pending log data" * 4096)
    img.write(9 * MiB, b"more")
    real = img.file.pwrite

    def stop_after_log(offset: int, data: bytes | bytearray | memoryview) -> None:
        real(offset, data)
        if offset == img.header.log_offset:
            img.file.sync()
            raise KeyboardInterrupt  # the "crash": nothing after the log write happens

    img.file.pwrite = stop_after_log  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        img.flush()
    img.file.close()
    img.closed = True

    info = run("qemu-img", "info", "-f", "vhdx", path)
    assert info.returncode != 0 and "log" in info.stderr  # qemu agrees the log is pending
    with VhdxImage(path, writable=False) as ro:
        seen = ro.read(0, ro.size)
    repaired = tmp_path / "repaired.vhdx"
    shutil.copy(path, repaired)
    assert run("qemu-img", "check", "-r", "all", "-f", "vhdx", repaired).returncode == 0
    flat = tmp_path / "flat.raw"
    assert run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", repaired, flat).returncode == 0
    assert seen == flat.read_bytes()
    assert seen[5 * MiB + 4096 : 5 * MiB + 4096 + 16] == b"pending log data"
    # pyhv's own replay leaves a file qemu finds clean
    with VhdxImage(path, writable=True) as rw:
        assert rw.read(0, rw.size) == seen
    assert_qemu_clean(path)


def test_resize_and_compact_stay_clean_for_qemu(tmp_path: Path) -> None:
    path = tmp_path / "r.vhdx"
    FORMAT.create(path, CreateSpec(size=64 * MiB, block_size=1 * MiB), None)
    raw = sparse_raw(tmp_path / "r.raw", 64 * MiB)
    with VhdxImage(path, writable=True) as img:
        write_random(img, raw, seed=3, count=10, max_len=MiB)
        img.write_zeroes(0, 20 * MiB)
        with open(raw, "r+b") as f:
            f.write(bytes(20 * MiB))
        img.compact()
    assert_qemu_clean(path)
    assert_same_as_raw(path, raw)
    with VhdxImage(path, writable=True) as img:
        bat_before = img.regions.bat.file_offset
        img.resize(200 * GiB)  # 1 MiB blocks: the BAT outgrows its 1 MiB region and moves
        assert img.regions.bat.file_offset != bat_before
        img.write(200 * GiB - 4, b"!!!!")
    assert qemu_virtual_size(path) == 200 * GiB
    assert_qemu_clean(path)
    out = run("qemu-io", "-f", "vhdx", "-c", f"read -P 0x21 {200 * GiB - 4} 4", path)
    assert out.returncode == 0 and "Pattern verification failed" not in out.stdout, out.stdout
    with VhdxImage(path, writable=False) as img:
        assert img.read(0, 64 * MiB) == raw.read_bytes()


def test_crafted_log_on_qemu_image_replays_like_qemu(tmp_path: Path) -> None:
    """A hand-built entry (data + zero descriptors) on a qemu-made file, as [MS-VHDX] §2.3."""
    path = tmp_path / "crafted.vhdx"
    opts = "subformat=dynamic,block_size=1M"
    assert run("qemu-img", "create", "-f", "vhdx", "-o", opts, path, "16M").returncode == 0
    for block in range(4):
        cmd = f"write -P {0x30 + block} {block * MiB} {MiB}"
        assert run("qemu-io", "-f", "vhdx", "-c", cmd, path).returncode == 0
    with VhdxImage(path, writable=False) as img:
        h, bat_at = img.header, img.regions.bat.file_offset
        bat = list(img.bat)
        block1 = batlib.entry_offset(bat[img.geometry.payload_index(1)])
        bat[img.geometry.payload_index(3)] = batlib.pack_entry(s.PayloadState.ZERO)
        file_size = os.path.getsize(path)
    sector = batlib.pack_bat(bat)[:4096].ljust(4096, b"\0")
    log_guid = uuid.uuid4()
    entry = loglib.build_log_entry(
        sequence_number=0x1122334455,
        log_guid=log_guid,
        sectors={bat_at: sector},
        zeros=[(block1 + 8192, 8192)],
        flushed_file_offset=file_size,
        last_file_offset=file_size,
        log_length=h.log_length,
    )
    with open(path, "r+b") as f:
        f.seek(h.log_offset)
        f.write(entry)
        for n, off in enumerate(s.HEADER_OFFSETS, start=1):
            new = dataclasses.replace(h, sequence_number=h.sequence_number + n, log_guid=log_guid)
            f.seek(off)
            f.write(hdr.pack_header(new))
    with VhdxImage(path, writable=False) as ro:
        seen = ro.read(0, ro.size)
    assert seen[MiB + 8192 : MiB + 16384] == bytes(8192)
    assert seen[3 * MiB : 4 * MiB] == bytes(MiB)
    assert seen[2 * MiB : 3 * MiB] == bytes([0x32]) * MiB
    repaired = tmp_path / "repaired.vhdx"
    shutil.copy(path, repaired)
    assert run("qemu-img", "check", "-r", "all", "-f", "vhdx", repaired).returncode == 0
    flat = tmp_path / "flat.raw"
    assert run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", repaired, flat).returncode == 0
    assert seen == flat.read_bytes()


@pytest.mark.parametrize("block", [1 * MiB, 32 * MiB])
def test_bat_interleave_beyond_first_chunk_agrees_with_qemu(tmp_path: Path, block: int) -> None:
    """Blocks past the first chunk (4 GiB at 1 MiB blocks) sit after a sector-bitmap entry."""
    path = tmp_path / "big.vhdx"
    size = 4096 * block + 8 * block
    FORMAT.create(path, CreateSpec(size=size, block_size=block), None)
    spots = [(4095 * block, 0x41), (4096 * block + 5, 0x42), (size - 512, 0x43)]
    with VhdxImage(path, writable=True) as img:
        for off, value in spots:
            img.write(off, bytes([value]) * 512)
    assert_qemu_clean(path)
    for off, value in spots:
        out = run("qemu-io", "-f", "vhdx", "-c", f"read -P {value} {off} 512", path)
        assert out.returncode == 0 and "verification failed" not in out.stdout, out.stdout
    # and the other way round: qemu writes there, pyhv reads it
    assert (
        run("qemu-io", "-f", "vhdx", "-c", f"write -P 0x44 {4097 * block} 4096", path).returncode
        == 0
    )
    with VhdxImage(path, writable=False) as img:
        assert img.read(4097 * block, 4096) == b"\x44" * 4096
        assert img.read(4096 * block + 5, 512) == b"\x42" * 512
