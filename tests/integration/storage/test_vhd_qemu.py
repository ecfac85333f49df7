"""VHD interop with qemu-img/qemu-io and libvhdi: sizes, content, differencing chains."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.vhd.check import check_vhd
from pyhv.units import GiB, MiB

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed"),
]


def qemu_size(path: Path) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "-f", "vpc", "--output=json", str(path)],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    return int(json.loads(out)["virtual-size"])


def qemu_compare(path: Path, raw: Path) -> None:
    r = subprocess.run(
        ["qemu-img", "compare", "-f", "vpc", "-F", "raw", str(path), str(raw)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("disk_type", [DiskType.FIXED, DiskType.DYNAMIC])
@pytest.mark.parametrize(
    ("request_size", "expected"),
    [(MiB, MiB), (10 * MiB, 10 * MiB), (1000001, 1000448), (127 * MiB, 127 * MiB)],
)
def test_qemu_reports_our_size(
    tmp_path: Path, disk_type: DiskType, request_size: int, expected: int
) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=request_size, disk_type=disk_type))
    with open_image(path) as img:
        assert img.size == expected
    assert qemu_size(path) == expected
    if disk_type == DiskType.FIXED:
        assert path.stat().st_size == expected + 512  # Azure: N MiB + 512 for whole MiB


def test_sparse_1g_dynamic(tmp_path: Path) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=GiB))
    assert qemu_size(path) == GiB
    assert path.stat().st_size == 4096  # same as qemu-img's own


@pytest.mark.parametrize("disk_type", [DiskType.FIXED, DiskType.DYNAMIC])
def test_random_writes_match_qemu_view(tmp_path: Path, disk_type: DiskType) -> None:
    size = 12 * MiB
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=size, disk_type=disk_type))
    ref = bytearray(size)
    rnd = random.Random(7)
    with open_image(path, writable=True) as img:
        for _ in range(80):
            off = rnd.randrange(size)
            data = rnd.randbytes(rnd.randrange(1, min(300_000, size - off) + 1))
            img.write(off, data)
            ref[off : off + len(data)] = data
    raw = tmp_path / "ref.raw"
    raw.write_bytes(ref)
    qemu_compare(path, raw)
    vhd = pytest.importorskip("dissect.hypervisor.disk.vhd")
    with path.open("rb") as fh:
        other = vhd.VHD(fh)
        assert other.size == size
        assert other.read(size) == ref


@pytest.mark.parametrize("subformat", ["fixed", "dynamic"])
@pytest.mark.parametrize("force_size", ["on", "off"])
def test_qemu_written_images_read_exactly(tmp_path: Path, subformat: str, force_size: str) -> None:
    path = tmp_path / "q.vhd"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "vpc", "-o",
         f"subformat={subformat},force_size={force_size}", str(path), "7000001"],
        check=True, timeout=120,
    )  # fmt: skip
    writes = "; ".join(
        f"write -P {0x11 + i} {off} {n}"
        for i, (off, n) in enumerate([(0, 4096), (2 * MiB - 512, 1024), (5 * MiB + 512, 70000)])
    )
    cmds = [arg for w in writes.split("; ") for arg in ("-c", w)]
    subprocess.run(
        ["qemu-io", "-f", "vpc", *cmds, str(path)], check=True, capture_output=True, timeout=120
    )
    raw = tmp_path / "q.raw"
    subprocess.run(
        ["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(path), str(raw)],
        check=True, timeout=120,
    )  # fmt: skip
    with open_image(path) as img:
        assert img.size == qemu_size(path)
        assert img.read(0, img.size) == raw.read_bytes()
    assert check_vhd(path, repair=False) == []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_three_level_chain_matches_libvhdi(tmp_path: Path) -> None:
    pyvhdi = pytest.importorskip("pyvhdi")
    size = 9 * MiB
    rnd = random.Random(11)
    ref = bytearray(size)
    paths = [tmp_path / "base.vhd", tmp_path / "mid.avhd", tmp_path / "top.avhd"]
    create_image(paths[0], CreateSpec(size=size))
    hashes: list[str] = []
    for i, path in enumerate(paths):
        if i:
            create_image(path, CreateSpec(size=0, parent=str(paths[i - 1])))
        with open_image(path, writable=True) as img:
            for _ in range(25):
                off = rnd.randrange(size)
                data = rnd.randbytes(rnd.randrange(1, min(400_000, size - off) + 1))
                img.write(off, data)
                ref[off : off + len(data)] = data
        assert [_sha(p) for p in paths[:i]] == hashes  # parents unchanged
        hashes.append(_sha(path))
    with open_image(paths[-1]) as img:
        assert img.read(0, size) == ref
    files = []
    for path in paths:
        f = pyvhdi.file()
        f.open(str(path))
        files.append(f)
    for parent, child in itertools.pairwise(files):
        child.set_parent(parent)
    files[-1].seek_offset(0)
    assert files[-1].read_buffer(size) == ref
    for f in reversed(files):
        f.close()


def test_qemu_agrees_after_resize_and_compact(tmp_path: Path) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=3 * MiB, block_size=64 * 1024))
    ref = bytearray(random.Random(3).randbytes(3 * MiB))
    with open_image(path, writable=True) as img:
        img.write(0, bytes(ref))
        img.resize(40 * MiB)  # 640 entries: the BAT no longer fits and moves to the end
        ref += bytes(37 * MiB)
        img.write(39 * MiB, b"tail" * 1024)
        ref[39 * MiB : 39 * MiB + 4096] = b"tail" * 1024
        img.write(0, bytes(2 * MiB))  # whole zero blocks for compact to give back
        ref[: 2 * MiB] = bytes(2 * MiB)
        size_before = path.stat().st_size
        freed = img.compact()
    assert freed > 0 and path.stat().st_size == size_before - freed
    assert qemu_size(path) == 40 * MiB
    raw = tmp_path / "ref.raw"
    raw.write_bytes(ref)
    qemu_compare(path, raw)
