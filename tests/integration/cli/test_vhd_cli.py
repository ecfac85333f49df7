"""`pyhv vhd` end to end: every command run as a subprocess, the way a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyhv.storage import open_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # many CLI processes per test

MiB = 1 << 20
KINDS = [
    ("vhd", "dynamic"),
    ("vhd", "fixed"),
    ("vhdx", "dynamic"),
    ("vhdx", "fixed"),
    ("img", "dynamic"),
]


def pyhv(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pyhv.cli", "vhd", *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k != "PYHV_DEBUG"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def ok(*args: str | Path) -> str:
    p = pyhv(*args)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p.stdout


def info(path: Path) -> dict:
    return json.loads(ok("info", path, "--json"))


def one_error_line(p: subprocess.CompletedProcess[str], code: int | None = None) -> str:
    """The contract for expected errors: non-zero exit, exactly one line on stderr, no traceback."""
    assert p.returncode != 0, p.stdout
    if code is not None:
        assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("pyhv: error: ")
    return lines[0]


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def disk_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open_image(path) as img:
        for off in range(0, img.size, 4 * MiB):
            h.update(img.read(off, min(4 * MiB, img.size - off)))
    return h.hexdigest()


def write(path: Path, offset: int, data: bytes) -> None:
    with open_image(path, writable=True) as img:
        img.write(offset, data)
        img.flush()


# -- new / info --------------------------------------------------------------------------------
@pytest.mark.parametrize(("ext", "kind"), KINDS)
def test_new_and_info_json(tmp_path: Path, ext: str, kind: str) -> None:
    path = tmp_path / f"disk.{ext}"
    ok("new", path, "--size", "64M", f"--{kind}")
    doc = info(path)
    assert doc["path"] == str(path)
    assert doc["format"] == ("raw" if ext == "img" else ext)
    assert doc["type"] == kind
    assert doc["virtual_size"] == 64 * MiB
    assert doc["file_size"] == path.stat().st_size
    assert doc["logical_sector_size"] == 512
    assert doc["physical_sector_size"] in (512, 4096)
    assert doc["parent_path"] is None
    assert [layer["path"] for layer in doc["chain"]] == [str(path)]
    for key in ("minimum_size", "block_size", "identifier", "allocated_bytes"):
        assert key in doc
    if ext != "img":
        assert len(doc["identifier"]) == 36  # a UUID
    if kind == "dynamic" and ext != "img":
        assert doc["block_size"] > 0
    assert ok("check", path).strip().endswith("no problems found")
    human = ok("info", path)
    assert "Virtual size" in human and "64M" in human


@pytest.mark.parametrize(
    ("text", "size"), [("10G", 10 << 30), ("512M", 512 * MiB), ("1T", 1 << 40), ("1048576", MiB)]
)
def test_new_size_units(tmp_path: Path, text: str, size: int) -> None:
    path = tmp_path / "d.vhdx"
    ok("new", path, "--size", text)
    assert info(path)["virtual_size"] == size


def test_new_options_block_and_sector_sizes(tmp_path: Path) -> None:
    path = tmp_path / "d.vhdx"
    ok(
        "new",
        path,
        "--size",
        "1G",
        "--block-size",
        "32M",
        "--logical-sector",
        "4096",
        "--physical-sector",
        "4096",
    )
    doc = info(path)
    assert (doc["block_size"], doc["logical_sector_size"], doc["physical_sector_size"]) == (
        32 * MiB,
        4096,
        4096,
    )


@pytest.mark.parametrize(
    ("base_ext", "child_ext"), [("vhd", "vhd"), ("vhdx", "vhdx"), ("vhd", "vhdx")]
)
def test_differencing_chain_info_lists_every_layer(
    tmp_path: Path, base_ext: str, child_ext: str
) -> None:
    base = tmp_path / f"base.{base_ext}"
    mid = tmp_path / f"mid.a{child_ext}"
    top = tmp_path / f"top.a{child_ext}"
    ok("new", base, "--size", "32M")
    ok("new", mid, "--parent", base)
    ok("new", top, "--parent", mid)
    doc = info(top)
    assert doc["type"] == "differencing"
    assert doc["virtual_size"] == 32 * MiB
    assert Path(doc["parent_path"]).name == mid.name
    assert [Path(layer["path"]).name for layer in doc["chain"]] == [top.name, mid.name, base.name]
    assert doc["chain"][2]["identifier"] == info(base)["identifier"]
    assert ok("check", top).strip().endswith("no problems found")


# -- resize / compact / merge / convert / set-parent ------------------------------------------
@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_resize_grows_and_keeps_data(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"d.{ext}"
    ok("new", path, "--size", "16M")
    write(path, 15 * MiB, b"end" * 100)
    with open_image(path) as img:
        before = hashlib.sha256(img.read(0, 16 * MiB)).hexdigest()
    ok("resize", path, "--size", "48M")
    assert info(path)["virtual_size"] == 48 * MiB
    with open_image(path) as img:
        assert hashlib.sha256(img.read(0, 16 * MiB)).hexdigest() == before
        assert img.read(16 * MiB, 32 * MiB) == bytes(32 * MiB)
    assert "no problems" in ok("check", path)


def test_resize_shrinks_vhdx_but_not_below_minimum_and_refuses_vhd(tmp_path: Path) -> None:
    vhdx = tmp_path / "d.vhdx"
    ok("new", vhdx, "--size", "64M")
    ok("resize", vhdx, "--size", "32M")
    assert info(vhdx)["virtual_size"] == 32 * MiB
    vhd = tmp_path / "d.vhd"
    ok("new", vhd, "--size", "64M")
    sha = file_sha(vhd)
    line = one_error_line(pyhv("resize", vhd, "--size", "32M"))
    assert "shrink" in line.lower()
    assert file_sha(vhd) == sha


@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_resize_reports_the_size_the_disk_got(tmp_path: Path, ext: str) -> None:
    """Formats round a size up to whole sectors; the message says what the disk now has, not
    what was asked for."""
    path = tmp_path / f"d.{ext}"
    ok("new", path, "--size", "1M")
    out = ok("resize", path, "--size", "2000001")
    assert out.strip().endswith("-> 1.9 MiB (2000384 bytes)")
    assert info(path)["virtual_size"] == 2000384


@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_compact_shrinks_after_zeroing(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"d.{ext}"
    ok("new", path, "--size", "64M")
    write(path, 0, os.urandom(48 * MiB))
    write(path, 0, bytes(40 * MiB))
    sha = disk_sha(path)
    before = path.stat().st_size
    ok("compact", path)
    assert path.stat().st_size <= before - 32 * MiB
    assert disk_sha(path) == sha
    assert "no problems" in ok("check", path)


def test_compact_punches_holes_in_a_raw_image(tmp_path: Path) -> None:
    """Raw has no allocation table of its own; compaction punches holes, fixed or sparse."""
    path = tmp_path / "d.img"
    ok("new", path, "--size", "16M", "--fixed")
    write(path, 0, os.urandom(MiB))
    sha = disk_sha(path)
    out = ok("compact", path)
    assert out.startswith(f"{path}: gave back ") and out.rstrip().endswith("file size 16M")
    assert disk_sha(path) == sha
    assert path.stat().st_size == 16 * MiB


@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_merge_default_and_into_ancestor(tmp_path: Path, ext: str) -> None:
    base, mid, top = (tmp_path / n for n in (f"base.{ext}", f"mid.a{ext}", f"top.a{ext}"))
    ok("new", base, "--size", "32M")
    write(base, 0, b"B" * (4 * MiB))
    ok("new", mid, "--parent", base)
    write(mid, MiB, b"M" * MiB)
    ok("new", top, "--parent", mid)
    write(top, 3 * MiB + 512, b"T" * 4096)
    sha = disk_sha(top)
    ok("merge", top)
    assert not top.exists()
    assert disk_sha(mid) == sha
    ok("new", top, "--parent", mid)
    write(top, 20 * MiB, b"U" * MiB)
    sha = disk_sha(top)
    out = ok("merge", top, "--into", base)
    assert str(base) in out
    assert not top.exists() and not mid.exists()
    assert disk_sha(base) == sha
    assert "no problems" in ok("check", base)


def test_merge_refuses_a_non_ancestor(tmp_path: Path) -> None:
    base, child, other = tmp_path / "b.vhdx", tmp_path / "c.avhdx", tmp_path / "o.vhdx"
    ok("new", base, "--size", "8M")
    ok("new", other, "--size", "8M")
    ok("new", child, "--parent", base)
    one_error_line(pyhv("merge", child, "--into", other), 2)
    assert child.exists()


@pytest.mark.parametrize(
    ("src_ext", "dst_ext", "opts"),
    [
        ("vhdx", "img", []),
        ("img", "vhdx", ["--dynamic"]),
        ("img", "vhd", ["--fixed"]),
        ("vhd", "vhdx", ["--fixed"]),
        ("vhdx", "vhd", ["--dynamic", "--block-size", "1M"]),
    ],
)
def test_convert_matches_qemu_img_compare(
    tmp_path: Path, src_ext: str, dst_ext: str, opts: list[str]
) -> None:
    src, dst = tmp_path / f"src.{src_ext}", tmp_path / f"dst.{dst_ext}"
    ok("new", src, "--size", "24M")
    write(src, 0, os.urandom(3 * MiB))
    write(src, 17 * MiB + 512, os.urandom(5000))
    ok("convert", src, dst, *opts)
    assert disk_sha(dst) == disk_sha(src)
    fmt = {"img": "raw", "vhd": "vpc", "vhdx": "vhdx"}
    cmp = subprocess.run(
        ["qemu-img", "compare", "-f", fmt[src_ext], "-F", fmt[dst_ext], str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    if "--fixed" in opts:
        assert info(dst)["type"] == "fixed"
    if "--block-size" in opts:
        assert info(dst)["block_size"] == MiB


def test_convert_flattens_a_chain_and_deletes_source(tmp_path: Path) -> None:
    base, child, out = tmp_path / "b.vhd", tmp_path / "c.avhdx", tmp_path / "flat.vhdx"
    ok("new", base, "--size", "16M")
    write(base, 0, b"b" * MiB)
    ok("new", child, "--parent", base)
    write(child, 512, b"c" * 1000)
    sha = disk_sha(child)
    ok("convert", child, out, "--delete-source")
    assert not child.exists() and base.exists()
    doc = info(out)
    assert (doc["type"], doc["parent_path"]) == ("dynamic", None)
    assert disk_sha(out) == sha


def test_set_parent_after_the_parent_moved(tmp_path: Path) -> None:
    base, child = tmp_path / "base.vhdx", tmp_path / "child.avhdx"
    ok("new", base, "--size", "8M")
    write(base, 0, b"x" * 4096)
    ok("new", child, "--parent", base)
    (tmp_path / "moved").mkdir()
    moved = tmp_path / "moved" / "base.vhdx"
    shutil.move(base, moved)
    line = one_error_line(pyhv("convert", child, tmp_path / "out.vhdx"))
    assert "parent" in line
    assert not (tmp_path / "out.vhdx").exists()
    ok("set-parent", child, "--parent", moved)
    assert Path(info(child)["parent_path"]).name == "base.vhdx"
    assert info(child)["chain"][1]["path"].endswith("moved/base.vhdx")
    with open_image(child) as img:
        assert img.read(0, 4096) == b"x" * 4096


def test_set_parent_refuses_a_disk_of_another_identity(tmp_path: Path) -> None:
    base, other, child = tmp_path / "base.vhd", tmp_path / "other.vhd", tmp_path / "child.avhd"
    ok("new", base, "--size", "8M")
    ok("new", other, "--size", "8M")
    ok("new", child, "--parent", base)
    sha = file_sha(child)
    assert "identity" in one_error_line(pyhv("set-parent", child, "--parent", other))
    assert file_sha(child) == sha


def test_real_qemu_vhd_info_and_convert(tmp_path: Path, vhd_testdata: Path) -> None:
    """ext2.vhd (written by qemu, CHS-sized) from the shared test vectors, end to end."""
    src = tmp_path / "ext2.vhd"
    shutil.copy(vhd_testdata / "ext2.vhd", src)
    doc = info(src)
    assert (doc["format"], doc["type"], doc["virtual_size"]) == ("vhd", "dynamic", 4212736)
    ok("convert", src, tmp_path / "ext2.img")
    assert file_sha(tmp_path / "ext2.img") == (
        "870be7ae16c1fa8faab05c6eb9205dc9a7ae35c5f552c5cf8a267c0bc6a5cb99"
    )
    assert "no problems" in ok("check", src)
