"""`pyhv vhd` on bad input: damaged files, broken chains, absurd arguments.

The contract for every case: a non-zero exit (2 for bad arguments), one line on stderr naming
the problem, no traceback, and nothing written: every file in the folder keeps its hash and no
new file (not even a hidden temporary one) is left behind. ``check`` instead lists one line per
problem on stdout and exits 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.storage import open_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # many CLI processes per test

MiB = 1 << 20
VHDX_BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")


def pyhv(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pyhv.cli", "vhd", *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k != "PYHV_DEBUG"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.iterdir())
    }


def fails_cleanly(folder: Path, *args: str | Path, code: int | None = None) -> str:
    """Run a command that must fail; returns its one error line."""
    before = snapshot(folder)
    p = pyhv(*args)
    assert p.returncode != 0, p.stdout
    if code is not None:
        assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyhv: error: "), p.stderr
    assert snapshot(folder) == before
    return lines[0]


def check_finds_problems(folder: Path, path: Path) -> list[str]:
    before = snapshot(folder)
    p = pyhv("check", path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert snapshot(folder) == before
    lines = p.stdout.strip().splitlines() or p.stderr.strip().splitlines()
    assert lines
    return lines


def new(path: Path, *args: str) -> Path:
    p = pyhv("new", path, *args)
    assert p.returncode == 0, p.stderr
    return path


def write(path: Path, offset: int, data: bytes) -> None:
    with open_image(path, writable=True) as img:
        img.write(offset, data)
        img.flush()


# -- format surgery -----------------------------------------------------------------------------
def vhd_checksum(buf: bytes | bytearray, at: int) -> int:
    return ~(sum(buf) - sum(buf[at : at + 4])) & 0xFFFFFFFF


def patch_vhd_footer(path: Path, change: Callable[[bytearray], None]) -> None:
    """Edit the footer (both copies of a dynamic disk) and keep its checksum valid."""
    with path.open("r+b") as f:
        f.seek(-512, os.SEEK_END)
        footer = bytearray(f.read(512))
        change(footer)
        footer[64:68] = struct.pack(">I", vhd_checksum(footer, 64))
        f.seek(-512, os.SEEK_END)
        f.write(footer)
        f.seek(0)
        if f.read(8) == b"conectix":
            f.seek(0)
            f.write(footer)


def vhd_bat_offset(path: Path) -> int:
    with path.open("rb") as f:
        f.seek(-512, os.SEEK_END)
        (header_at,) = struct.unpack(">Q", f.read(512)[16:24])
        f.seek(header_at + 16)
        return int(struct.unpack(">Q", f.read(8))[0])


def vhdx_bat_offset(path: Path) -> int:
    with path.open("rb") as f:
        f.seek(192 * 1024)
        table = f.read(64 * 1024)
    (count,) = struct.unpack_from("<I", table, 8)
    for i in range(count):
        guid, offset = struct.unpack_from("<16sQ", table, 16 + 32 * i)
        if uuid.UUID(bytes_le=guid) == VHDX_BAT_REGION:
            return int(offset)
    raise AssertionError("no BAT region")


def poke(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def two_blocks_of_data(folder: Path, ext: str) -> Path:
    path = new(folder / f"d.{ext}", "--size", "64M", "--block-size", "2M")
    write(path, 0, os.urandom(4 * MiB))
    return path


# -- damaged files ----------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["vhd", "vhdx", "avhdx"])
def test_empty_file(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"empty.{ext}"
    path.touch()
    fails_cleanly(tmp_path, "info", path)
    fails_cleanly(tmp_path, "convert", path, tmp_path / "out.img")
    check_finds_problems(tmp_path, path)


def test_vhdx_truncated_inside_its_headers(tmp_path: Path) -> None:
    path = two_blocks_of_data(tmp_path, "vhdx")
    os.truncate(path, 100 * 1024)
    fails_cleanly(tmp_path, "info", path)
    fails_cleanly(tmp_path, "convert", path, tmp_path / "out.vhd")
    check_finds_problems(tmp_path, path)


@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_truncated_in_the_middle_of_the_data(tmp_path: Path, ext: str) -> None:
    path = two_blocks_of_data(tmp_path, ext)
    os.truncate(path, path.stat().st_size - 3 * MiB)
    check_finds_problems(tmp_path, path)
    fails_cleanly(tmp_path, "convert", path, tmp_path / "out.img")


def test_vhd_with_bad_footer_checksums(tmp_path: Path) -> None:
    path = two_blocks_of_data(tmp_path, "vhd")
    size = path.stat().st_size
    poke(path, size - 512 + 64, b"\xde\xad\xbe\xef")
    poke(path, 64, b"\xde\xad\xbe\xef")
    assert "checksum" in fails_cleanly(tmp_path, "info", path).lower()
    check_finds_problems(tmp_path, path)


def test_vhdx_with_both_headers_damaged(tmp_path: Path) -> None:
    path = two_blocks_of_data(tmp_path, "vhdx")
    poke(path, 64 * 1024 + 4, b"\xff\xff\xff\xff")
    poke(path, 128 * 1024 + 4, b"\xff\xff\xff\xff")
    fails_cleanly(tmp_path, "info", path)
    check_finds_problems(tmp_path, path)


def test_vhdx_with_both_region_tables_damaged(tmp_path: Path) -> None:
    path = two_blocks_of_data(tmp_path, "vhdx")
    poke(path, 192 * 1024 + 4, b"\x00\x00\x00\x01")
    poke(path, 256 * 1024 + 4, b"\x00\x00\x00\x01")
    fails_cleanly(tmp_path, "info", path)
    check_finds_problems(tmp_path, path)


def test_vhd_bat_entry_past_the_end(tmp_path: Path) -> None:
    path = two_blocks_of_data(tmp_path, "vhd")
    poke(path, vhd_bat_offset(path), struct.pack(">I", 0x00FFFFF0))
    assert any("BAT" in line or "bat" in line for line in check_finds_problems(tmp_path, path))
    fails_cleanly(tmp_path, "convert", path, tmp_path / "out.vhdx")


def test_vhdx_bat_entry_past_the_end(tmp_path: Path) -> None:
    path = two_blocks_of_data(tmp_path, "vhdx")
    poke(path, vhdx_bat_offset(path), struct.pack("<Q", (1 << 40) | 6))  # FULLY_PRESENT @ 1 TiB
    check_finds_problems(tmp_path, path)
    fails_cleanly(tmp_path, "convert", path, tmp_path / "out.vhd")


@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_overlapping_bat_entries(tmp_path: Path, ext: str) -> None:
    path = two_blocks_of_data(tmp_path, ext)
    if ext == "vhd":
        at, width = vhd_bat_offset(path), 4
    else:
        at, width = vhdx_bat_offset(path), 8
    with path.open("r+b") as f:
        f.seek(at)
        first = f.read(width)
        f.write(first)  # entry 1 := entry 0
    assert any("overlap" in line.lower() for line in check_finds_problems(tmp_path, path))


# -- broken chains ------------------------------------------------------------------------------
def test_missing_parent(tmp_path: Path) -> None:
    base, child = new(tmp_path / "base.vhdx", "--size", "8M"), tmp_path / "child.avhdx"
    new(child, "--parent", base)
    base.unlink()
    assert "base.vhdx" in fails_cleanly(tmp_path, "convert", child, tmp_path / "out.vhdx")
    fails_cleanly(tmp_path, "merge", child)
    assert any("base.vhdx" in line for line in check_finds_problems(tmp_path, child))
    # the disk itself is still shown, then the broken link is the error
    assert "base.vhdx" in fails_cleanly(tmp_path, "info", child)
    p = pyhv("info", child, "--json")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["type"] == "differencing" and "base.vhdx" in doc["chain_error"]


def test_parent_loop(tmp_path: Path) -> None:
    base = new(tmp_path / "base.vhd", "--size", "8M")
    child = new(tmp_path / "child.avhd", "--parent", base)
    evil = new(tmp_path / "evil.avhd", "--parent", child)
    base_id = base.read_bytes()[68:84]
    patch_vhd_footer(evil, lambda f: f.__setitem__(slice(68, 84), base_id))
    os.replace(evil, base)  # base.vhd now is a child of child.avhd, with base's identity
    assert "loop" in fails_cleanly(tmp_path, "info", child)
    fails_cleanly(tmp_path, "convert", child, tmp_path / "out.vhd")
    assert any("loop" in line for line in check_finds_problems(tmp_path, child))


def test_wrong_parent_identity(tmp_path: Path) -> None:
    base = new(tmp_path / "base.vhd", "--size", "8M")
    child = new(tmp_path / "child.avhd", "--parent", base)
    patch_vhd_footer(base, lambda f: f.__setitem__(slice(68, 84), os.urandom(16)))
    assert "identity" in fails_cleanly(tmp_path, "convert", child, tmp_path / "o.vhd")
    assert any("identity" in line for line in check_finds_problems(tmp_path, child))


def test_real_windows_child_without_its_parent(tmp_path: Path, vhd_testdata: Path) -> None:
    child = tmp_path / "fat-differential.vhd"
    shutil.copy(vhd_testdata / "fat-differential.vhd", child)
    assert "fat-parent.vhd" in fails_cleanly(tmp_path, "convert", child, tmp_path / "o.vhdx")
    assert any("fat-parent.vhd" in line for line in check_finds_problems(tmp_path, child))


def test_real_file_with_bad_checksum(tmp_path: Path, vhd_testdata: Path) -> None:
    path = tmp_path / "image.vhd"
    shutil.copy(vhd_testdata / "image.vhd", path)
    p = pyhv("info", path)
    assert "Traceback" not in p.stderr
    if p.returncode:
        assert "checksum" in fails_cleanly(tmp_path, "info", path).lower()


# -- bad arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("d.vhdx", "0"),
        ("d.vhdx", "-5G"),
        ("d.vhd", "3T"),
        ("d.vhdx", "65T"),
        ("d.vhdx", "1000"),
        ("d.vhd", "12345"),
        ("d.vhdx", "ten gigs"),
        ("d.vhdx", "1.5"),
    ],
)
def test_absurd_sizes_for_new(tmp_path: Path, name: str, size: str) -> None:
    fails_cleanly(tmp_path, "new", tmp_path / name, f"--size={size}", code=2)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        # floats made these 10000000000000000000000T, 1G and 120563270519868832K
        ("d.vhdx", "9999999999999999999999T", "size 9999999999999999999999T is outside"),
        ("d.vhdx", "1.0000000000000001G", "invalid size '1.0000000000000001G': not a whole"),
        ("d.vhdx", "123456789012345678901", "invalid size '123456789012345678901': not a mult"),
        ("d.vhd", "123456789012345678848", "VHD size 123456789012345678848 exceeds"),
        ("d.vhdx", "1" * 400 + "P", "size 11377777777777"),  # float overflow: a traceback
        ("d.vhdx", "1" * 401, "invalid size '11111"),
    ],
)
def test_huge_and_inexact_sizes_are_named_as_typed(
    tmp_path: Path, name: str, size: str, message: str
) -> None:
    line = fails_cleanly(tmp_path, "new", tmp_path / name, "--size", size, code=2)
    assert line.startswith(f"pyhv: error: {message}"), line
    assert "e+" not in line and "000000000000000" not in line.replace(size, "")


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "1G", "--fixed", "--dynamic"],
        ["--size", "1G", "--logical-sector", "1024"],
        ["--size", "1G", "--physical-sector", "4097"],
        ["--size", "1G", "--block-size", "3M"],
        [],
    ],
)
def test_bad_options_for_new(tmp_path: Path, args: list[str]) -> None:
    fails_cleanly(tmp_path, "new", tmp_path / "d.vhdx", *args, code=2)


def test_new_refuses_an_existing_file_and_a_wrong_extension(tmp_path: Path) -> None:
    existing = new(tmp_path / "d.vhdx", "--size", "8M")
    assert "exists" in fails_cleanly(tmp_path, "new", existing, "--size", "16M", code=2)
    fails_cleanly(tmp_path, "new", tmp_path / "d.qcow2", "--size", "8M", code=2)
    fails_cleanly(tmp_path, "new", tmp_path / "noext", "--size", "8M", code=2)


def test_new_with_parent_refuses_size_and_type(tmp_path: Path) -> None:
    base = new(tmp_path / "b.vhdx", "--size", "8M")
    fails_cleanly(tmp_path, "new", tmp_path / "c.avhdx", "--parent", base, "--size", "8M", code=2)
    fails_cleanly(tmp_path, "new", tmp_path / "c.avhdx", "--parent", base, "--fixed", code=2)
    fails_cleanly(tmp_path, "new", tmp_path / "c.avhdx", "--parent", tmp_path / "nope.vhdx")


@pytest.mark.parametrize("child", ["c.avhd", "c.avhdx"])
def test_new_refuses_a_raw_parent(tmp_path: Path, child: str) -> None:
    """A VHDX child of a raw file used to be written, and then refused by its own `new`."""
    raw = tmp_path / "p.img"
    raw.write_bytes(b"r" * 1000)
    line = fails_cleanly(tmp_path, "new", tmp_path / child, "--parent", raw)
    assert "not raw" in line


def test_convert_refuses_existing_target_and_unknown_extension(tmp_path: Path) -> None:
    src = new(tmp_path / "s.vhdx", "--size", "8M")
    dst = new(tmp_path / "d.vhd", "--size", "8M")
    fails_cleanly(tmp_path, "convert", src, dst, code=2)
    fails_cleanly(tmp_path, "convert", src, tmp_path / "d.qcow2", code=2)
    fails_cleanly(tmp_path, "convert", src, tmp_path / "x.vhd", "--fixed", "--dynamic", code=2)
    fails_cleanly(tmp_path, "convert", tmp_path / "missing.vhd", tmp_path / "x.vhd", code=2)
    line = fails_cleanly(tmp_path, "convert", src, tmp_path / "no" / "x.vhd", code=2)
    assert "partial" not in line and "no/x.vhd" in line


def test_other_commands_refuse_bad_arguments(tmp_path: Path) -> None:
    disk = new(tmp_path / "d.vhdx", "--size", "8M")
    fails_cleanly(tmp_path, "resize", disk, "--size", "0", code=2)
    fails_cleanly(tmp_path, "resize", disk, "--size", "65T", code=2)
    fails_cleanly(tmp_path, "merge", disk, code=2)
    fails_cleanly(tmp_path, "set-parent", disk, "--parent", disk, code=2)
    fails_cleanly(tmp_path, "info", tmp_path, code=None)
    fails_cleanly(tmp_path, "compact", tmp_path / "missing.vhdx", code=2)


@pytest.mark.parametrize(("ext", "fmt"), [("vhd", "VHD"), ("vhdx", "VHDX")])
def test_compact_refuses_a_fixed_disk(tmp_path: Path, ext: str, fmt: str) -> None:
    """Optimize-VHD compacts only dynamic and differencing disks; this said "gave back 0 B"."""
    disk = new(tmp_path / f"d.{ext}", "--size", "8M", "--fixed")
    line = fails_cleanly(tmp_path, "compact", disk, code=1)
    assert line == (
        f"pyhv: error: {disk}: cannot compact a fixed {fmt} disk, it has no unused blocks to "
        "give back (only dynamic and differencing disks can be compacted); make a dynamic copy "
        f"with: pyhv vhd convert {disk} NEW.{ext} --dynamic"
    )


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    for args in (["new"], ["frobnicate"], ["info"], ["resize", "x.vhdx"]):
        p = pyhv(*args)
        assert p.returncode == 2, args
        assert "Traceback" not in p.stderr


def test_check_repair_fixes_a_damaged_footer_copy(tmp_path: Path) -> None:
    path = new(tmp_path / "d.vhd", "--size", "8M")
    poke(path, 64, b"\x00\x00\x00\x01")  # checksum of the footer copy at offset 0
    assert any("checksum" in line for line in check_finds_problems(tmp_path, path))
    p = pyhv("check", path, "--repair")
    assert p.returncode == 0, p.stdout + p.stderr
    assert pyhv("check", path).returncode == 0


def test_disk_in_use_elsewhere_is_left_alone(tmp_path: Path) -> None:
    disk = new(tmp_path / "d.vhdx", "--size", "8M")
    with open_image(disk, writable=True):  # this process plays the running VM
        for args in (["resize", disk, "--size", "16M"], ["compact", disk]):
            assert "in use" in fails_cleanly(tmp_path, *args)
        fails_cleanly(tmp_path, "convert", disk, tmp_path / "copy.vhd")
