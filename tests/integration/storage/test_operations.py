"""convert, merge, compact and check on real VHD/VHDX chains three levels deep.

Every operation must keep what the disk shows: the sha256 of the whole virtual disk is the same
before and after; qemu-img agrees with the converted files it can read.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from pyhv.errors import ParentError, PyhvError, UsageError
from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.operations import (
    check_chain,
    compact_image,
    convert_image,
    merge_image,
    resize_image,
    set_parent,
)
from pyhv.storage.operations import convert as convert_module

pytestmark = pytest.mark.integration  # qemu-img compare

MiB = 1 << 20
SIZE = 48 * MiB
CHAINS = [("vhd", "avhd"), ("vhdx", "avhdx"), ("vhd", "avhdx")]


def disk_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open_image(path) as img:
        for off in range(0, img.size, 8 * MiB):
            h.update(img.read(off, min(8 * MiB, img.size - off)))
    return h.hexdigest()


def write(path: Path, *pieces: tuple[int, bytes]) -> None:
    with open_image(path, writable=True) as img:
        for offset, data in pieces:
            img.write(offset, data)
        img.flush()


def make_chain(folder: Path, base_ext: str, child_ext: str, lss: int = 512) -> list[Path]:
    """base ← mid ← top, each layer overwriting parts of the one below, some with zeros."""
    base, mid, top = (
        folder / f"base.{base_ext}",
        folder / f"mid.{child_ext}",
        folder / f"top.{child_ext}",
    )
    create_image(base, CreateSpec(size=SIZE, block_size=2 * MiB, logical_sector_size=lss))
    write(base, (0, os.urandom(6 * MiB)), (20 * MiB + 4096, os.urandom(3 * MiB)))
    create_image(mid, CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(base)))
    write(mid, (MiB, os.urandom(MiB)), (4 * MiB, bytes(MiB)), (30 * MiB, os.urandom(8192)))
    create_image(top, CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(mid)))
    write(top, (4096, os.urandom(512)), (20 * MiB, bytes(2 * MiB)), (47 * MiB, os.urandom(MiB)))
    return [base, mid, top]


def qemu_compare(a: Path, a_fmt: str, b: Path, b_fmt: str) -> None:
    p = subprocess.run(
        ["qemu-img", "compare", "-f", a_fmt, "-F", b_fmt, str(a), str(b)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize(("base_ext", "child_ext"), CHAINS)
def test_chain_is_sound(tmp_path: Path, base_ext: str, child_ext: str) -> None:
    *_, top = make_chain(tmp_path, base_ext, child_ext)
    assert check_chain(top) == []


@pytest.mark.parametrize(("base_ext", "child_ext"), CHAINS)
def test_merge_into_parent_keeps_content(tmp_path: Path, base_ext: str, child_ext: str) -> None:
    base, mid, top = make_chain(tmp_path, base_ext, child_ext)
    sha = disk_sha(top)
    base_sha = disk_sha(base)
    calls: list[tuple[int, int]] = []
    assert merge_image(top, progress=lambda d, t: calls.append((d, t))) == mid
    assert not top.exists()
    assert disk_sha(mid) == sha
    assert disk_sha(base) == base_sha  # only the target changes
    assert calls and calls[-1][0] == calls[-1][1] > 0
    assert check_chain(mid) == []


@pytest.mark.parametrize(("base_ext", "child_ext"), CHAINS)
def test_merge_into_base_folds_every_layer(tmp_path: Path, base_ext: str, child_ext: str) -> None:
    base, mid, top = make_chain(tmp_path, base_ext, child_ext)
    sha = disk_sha(top)
    assert merge_image(top, into=base) == base
    assert not top.exists() and not mid.exists()
    assert disk_sha(base) == sha
    assert check_chain(base) == []


def test_merge_refuses_non_ancestors_and_base_disks(tmp_path: Path) -> None:
    base, mid, top = make_chain(tmp_path, "vhdx", "avhdx")
    with pytest.raises(UsageError, match="not an ancestor"):
        merge_image(mid, into=top)
    with pytest.raises(UsageError, match="not a differencing disk"):
        merge_image(base)
    assert top.exists() and mid.exists()


@pytest.mark.parametrize(("base_ext", "child_ext"), CHAINS)
@pytest.mark.parametrize("target", ["img", "vhd", "vhdx"])
def test_convert_flattens_chain(tmp_path: Path, base_ext: str, child_ext: str, target: str) -> None:
    *_, top = make_chain(tmp_path, base_ext, child_ext)
    sha = disk_sha(top)
    out = tmp_path / f"flat.{target}"
    convert_image(top, out, block_size=None if target == "img" else 2 * MiB)
    assert disk_sha(out) == sha
    with open_image(out) as img:
        assert img.disk_type == DiskType.DYNAMIC and img.parent is None
    raw = tmp_path / "flat-check.img"
    convert_image(top, raw)
    qemu_compare(raw, "raw", out, {"img": "raw", "vhd": "vpc", "vhdx": "vhdx"}[target])
    # zeros are not stored: 6 of the 24 blocks hold data (some of the chain's data is zeros)
    stored = out.stat().st_blocks * 512 if target == "img" else out.stat().st_size
    assert stored < 20 * MiB


@pytest.mark.parametrize("target", ["vhd", "vhdx"])
def test_convert_to_fixed_with_block_size(tmp_path: Path, target: str) -> None:
    *_, top = make_chain(tmp_path, "vhdx", "avhdx")
    fixed = tmp_path / f"fixed.{target}"
    convert_image(top, fixed, disk_type=DiskType.FIXED)
    small = tmp_path / f"small-blocks.{target}"
    convert_image(fixed, small, disk_type=DiskType.DYNAMIC, block_size=MiB)
    with open_image(fixed) as a, open_image(small) as b:
        assert (a.disk_type, b.disk_type, b.block_size) == (DiskType.FIXED, DiskType.DYNAMIC, MiB)
    assert disk_sha(fixed) == disk_sha(small) == disk_sha(top)


def test_convert_keeps_4k_sectors(tmp_path: Path) -> None:
    *_, top = make_chain(tmp_path, "vhdx", "avhdx", lss=4096)
    out = tmp_path / "out.vhdx"
    convert_image(top, out)
    with open_image(out) as img:
        assert img.logical_sector_size == 4096
    assert disk_sha(out) == disk_sha(top)
    with pytest.raises(PyhvError):
        convert_image(top, tmp_path / "out.vhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["base.vhdx", "mid.avhdx", "top.avhdx", "out.vhdx"]
    )


def test_failed_convert_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    *_, top = make_chain(tmp_path, "vhd", "avhd")
    before = sorted(tmp_path.iterdir())

    def broken_copy(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(convert_module, "copy_ranges", broken_copy)
    with pytest.raises(OSError):
        convert_image(top, tmp_path / "out.vhdx")
    assert sorted(tmp_path.iterdir()) == before


def test_convert_too_large_for_vhd_leaves_no_file(tmp_path: Path) -> None:
    big = tmp_path / "big.img"
    with big.open("wb") as f:
        f.truncate(3 << 40)
    with pytest.raises(PyhvError):
        convert_image(big, tmp_path / "big.vhd")
    assert [p.name for p in tmp_path.iterdir()] == ["big.img"]


@pytest.mark.parametrize(("base_ext", "child_ext"), CHAINS)
def test_compact_differencing_keeps_parent_data_visible(
    tmp_path: Path, base_ext: str, child_ext: str
) -> None:
    _, _, top = make_chain(tmp_path, base_ext, child_ext)
    # zeros over the parent's data must stay (they hide it); zeros over parent zeros may go
    write(top, (0, bytes(2 * MiB)), (10 * MiB, os.urandom(2 * MiB)))
    write(top, (10 * MiB, bytes(2 * MiB)))
    sha = disk_sha(top)
    compact_image(top)
    assert disk_sha(top) == sha
    assert check_chain(top) == []


@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_compact_shrinks_base_disk(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"d.{ext}"
    create_image(path, CreateSpec(size=SIZE, block_size=2 * MiB))
    write(path, (0, os.urandom(32 * MiB)))
    write(path, (2 * MiB, bytes(24 * MiB)))
    sha = disk_sha(path)
    before = path.stat().st_size
    freed = compact_image(path)
    assert path.stat().st_size <= before - 20 * MiB
    assert freed > 0
    assert disk_sha(path) == sha
    assert check_chain(path) == []


@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_resize_grows(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"d.{ext}"
    create_image(path, CreateSpec(size=SIZE))
    write(path, (SIZE - MiB, os.urandom(MiB)))
    sha = disk_sha(path)
    assert resize_image(path, 2 * SIZE) == SIZE
    with open_image(path) as img:
        assert img.size == 2 * SIZE
        assert hashlib.sha256(img.read(0, SIZE)).hexdigest() == sha
    assert check_chain(path) == []


def test_set_parent_relinks_after_a_move(tmp_path: Path) -> None:
    base, mid, top = make_chain(tmp_path, "vhdx", "avhdx")
    sha = disk_sha(top)
    (tmp_path / "elsewhere").mkdir()
    moved = tmp_path / "elsewhere" / "renamed.vhdx"
    base.rename(moved)
    assert any("base.vhdx" in line for line in check_chain(top))
    set_parent(mid, moved)
    assert check_chain(top) == []
    assert disk_sha(top) == sha


def test_merge_leaves_other_children_of_a_vhdx_ancestor_detectably_stale(tmp_path: Path) -> None:
    """Merging one child changes the ancestor under its siblings; their identity check says so."""
    base, merged, sibling = tmp_path / "base.vhdx", tmp_path / "a.avhdx", tmp_path / "b.avhdx"
    create_image(base, CreateSpec(size=SIZE))
    for child in (merged, sibling):
        create_image(child, CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(base)))
    write(merged, (0, os.urandom(MiB)))
    sha = disk_sha(merged)
    merge_image(merged)
    assert disk_sha(base) == sha
    with pytest.raises(ParentError):
        open_image(sibling).close()
    assert any("identity" in line for line in check_chain(sibling))
