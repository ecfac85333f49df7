"""VhdImage through open_image/create_image on real files (no QEMU needed)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from pyhv.errors import (
    ConflictError,
    CorruptImage,
    OutOfBounds,
    ParentError,
    UnsupportedFeature,
    UsageError,
)
from pyhv.storage import CreateSpec, DiskType, ExtentState, create_image, open_image, open_layer
from pyhv.storage.vhd.check import check_vhd
from pyhv.units import GiB, KiB, MiB


def _fill(
    path: Path, ref: bytearray, rnd: random.Random, count: int, max_len: int = 200_000
) -> None:
    with open_image(path, writable=True) as img:
        for _ in range(count):
            off = rnd.randrange(len(ref))
            data = rnd.randbytes(rnd.randrange(1, min(max_len, len(ref) - off) + 1))
            img.write(off, data)
            ref[off : off + len(data)] = data
        img.flush()


@pytest.mark.parametrize("disk_type", [DiskType.FIXED, DiskType.DYNAMIC])
def test_random_unaligned_writes_read_back(tmp_path: Path, disk_type: DiskType) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=6 * MiB + 1000, disk_type=disk_type, block_size=MiB))
    ref = bytearray(6 * MiB + 1024)  # rounded up to whole sectors
    _fill(path, ref, random.Random(1), 60)
    with open_image(path) as img:
        assert img.size == len(ref)
        assert img.read(0, img.size) == ref
        assert img.read(12345, 7) == ref[12345 : 12345 + 7]
        assert check_vhd(path, repair=False) == []


def test_three_level_chain_reads_through_and_keeps_parents(tmp_path: Path) -> None:
    rnd = random.Random(2)
    ref = bytearray(5 * MiB)
    base = tmp_path / "base.vhd"
    create_image(base, CreateSpec(size=len(ref), block_size=MiB))
    _fill(base, ref, rnd, 10)
    mid = tmp_path / "mid.avhd"
    create_image(mid, CreateSpec(size=0, parent=str(base)))
    _fill(mid, ref, rnd, 20)
    before = base.read_bytes(), mid.read_bytes()
    (tmp_path / "sub").mkdir()
    top = tmp_path / "sub" / "top.avhd"
    create_image(top, CreateSpec(size=0, parent=str(mid), block_size=512 * KiB))
    _fill(top, ref, rnd, 20)
    assert (base.read_bytes(), mid.read_bytes()) == before
    with open_image(top) as img:
        assert [p.path.name for p in img.chain()] == ["top.avhd", "mid.avhd", "base.vhd"]
        assert img.read(0, img.size) == ref
        own = img.extents(chain=False)
        assert {e.state for e in own} == {ExtentState.DATA, ExtentState.BACKING}
        assert sum(e.length for e in img.extents()) == img.size
        assert img.info().parent_path == str(mid)


def test_differencing_discard_never_exposes_parent(tmp_path: Path) -> None:
    base = tmp_path / "b.vhd"
    create_image(base, CreateSpec(size=4 * MiB))
    with open_image(base, writable=True) as img:
        img.write(0, b"P" * (4 * MiB))
    child = tmp_path / "c.avhd"
    create_image(child, CreateSpec(size=0, parent=str(base)))
    with open_image(child, writable=True) as img:
        img.write(0, b"C" * (2 * MiB))
        img.discard(0, 4 * MiB)
        data = img.read(0, 2 * MiB)
        assert set(data) <= {0, ord("C")}
        assert img.read(2 * MiB, 4096) == b"P" * 4096
        img.write_zeroes(2 * MiB, MiB)
        assert img.read(2 * MiB, MiB) == bytes(MiB)


def test_dynamic_discard_and_zeroes_free_blocks(tmp_path: Path) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=4 * MiB, block_size=MiB))
    with open_image(path, writable=True) as img:
        img.write(0, b"x" * (4 * MiB))
        img.discard(0, MiB)
        img.write_zeroes(MiB, MiB + 4096)
        assert img.read(0, 2 * MiB + 4096) == bytes(2 * MiB + 4096)
        assert img.read(2 * MiB + 4096, 10) == b"x" * 10
        zero = [e for e in img.extents() if e.state == ExtentState.ZERO]
        assert zero[0].offset == 0 and zero[0].length == 2 * MiB


def test_resize_grows_bat_in_place_and_by_moving_it(tmp_path: Path) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=64 * KiB, block_size=4096))
    ref = bytearray(64 * KiB)
    _fill(path, ref, random.Random(3), 10, 5000)
    with open_image(path, writable=True) as img:
        img.resize(80 * KiB)  # fits in the BAT's padding
        img.resize(8 * MiB)  # 2048 entries: the BAT moves to the end
        img.write(8 * MiB - 3, b"end")
        with pytest.raises(UnsupportedFeature, match="cannot shrink"):
            img.resize(MiB)
    ref += bytes(8 * MiB - len(ref))
    ref[-3:] = b"end"
    with open_image(path) as img:
        assert img.size == 8 * MiB
        assert img.read(0, img.size) == ref
    assert check_vhd(path, repair=False) == []


def test_resize_fixed(tmp_path: Path) -> None:
    path = tmp_path / "f.vhd"
    create_image(path, CreateSpec(size=MiB, disk_type=DiskType.FIXED))
    with open_image(path, writable=True) as img:
        img.write(MiB - 5, b"hello")
        img.resize(3 * MiB)
    with open_image(path) as img:
        assert img.size == 3 * MiB
        assert img.read(MiB - 5, 600) == b"hello" + bytes(595)
    assert path.stat().st_size == 3 * MiB + 512


def test_compact_frees_zero_blocks_and_shrinks_file(tmp_path: Path) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=8 * MiB, block_size=MiB))
    with open_image(path, writable=True) as img:
        img.write(0, b"a" * (8 * MiB))
        img.write(0, bytes(6 * MiB))  # blocks 0-5 now hold zeros
        ref = img.read(0, img.size)
        big = path.stat().st_size
        freed = img.compact()
        assert img.read(0, img.size) == ref
    assert freed > 5 * MiB
    assert path.stat().st_size == big - freed
    assert check_vhd(path, repair=False) == []
    with open_image(path) as img:
        assert img.read(0, img.size) == ref


def test_set_parent_locator_after_moving_parent(tmp_path: Path) -> None:
    base = tmp_path / "base.vhd"
    create_image(base, CreateSpec(size=MiB))
    child = tmp_path / "child.avhd"
    create_image(child, CreateSpec(size=0, parent=str(base)))
    deep = tmp_path.joinpath(
        *[chr(97 + i) * 200 for i in range(12)]
    )  # locators outgrow their space
    moved = deep / "moved.vhd"
    deep.mkdir(parents=True)
    base.rename(moved)
    with pytest.raises(ParentError, match=r"parent not found: base\.vhd"):
        open_image(child)
    with open_layer(moved) as parent, open_layer(child, writable=True) as img:
        img.set_parent_locator(parent, moved)  # type: ignore[attr-defined]
    with open_image(child) as img:
        assert img.chain()[1].path.name == moved.name
    assert check_vhd(child, repair=False) == []


def test_parent_identity_mismatch_and_loop(tmp_path: Path) -> None:
    base = tmp_path / "base.vhd"
    create_image(base, CreateSpec(size=MiB))
    child = tmp_path / "child.avhd"
    create_image(child, CreateSpec(size=0, parent=str(base)))
    base.unlink()
    create_image(base, CreateSpec(size=MiB))  # same name, different disk
    with pytest.raises(ParentError, match="identity"):
        open_image(child)
    base.unlink()
    child.rename(base)  # a child that is its own parent
    with pytest.raises(ParentError, match="loop"):
        open_image(base)


def test_concurrent_writes_from_threads(tmp_path: Path) -> None:
    base = tmp_path / "b.vhd"
    create_image(base, CreateSpec(size=4 * MiB, block_size=MiB))
    child = tmp_path / "c.avhd"
    create_image(child, CreateSpec(size=0, parent=str(base), block_size=MiB))
    with open_image(child, writable=True) as img:

        def worker(k: int) -> None:
            for i in range(k, 4 * MiB // 4096, 8):
                img.write(i * 4096 + 512, bytes([k + 1]) * 1024)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        data = img.read(0, img.size)
    for i in range(4 * MiB // 4096):
        assert data[i * 4096 + 512 : i * 4096 + 1536] == bytes([i % 8 + 1]) * 1024
        assert data[i * 4096 : i * 4096 + 512] == bytes(512)


def test_footer_fallback_check_and_repair(tmp_path: Path) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=MiB))
    with open_image(path, writable=True) as img:
        img.write(0, b"data")
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size - 400)
        f.write(b"garbage")
    with open_image(path) as img:
        assert img.read(0, 4) == b"data"
        assert img.info().extra["problems"]
    assert "footer at end of file: checksum mismatch" in check_vhd(path, repair=True)[0]
    assert check_vhd(path, repair=False) == []
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"garbage")
        f.seek(size - 400)
        f.write(b"garbage")
    with pytest.raises(CorruptImage, match="checksum mismatch"):
        open_image(path)


def test_bad_input_gives_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.vhd"
    empty.write_bytes(b"")
    with pytest.raises(Exception, match="not a VHD") as e:
        open_image(empty)
    assert "\n" not in str(e.value)
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=4 * MiB, block_size=MiB))
    with open_image(path, writable=True) as img:
        img.write(0, b"x" * (2 * MiB))
    data = path.read_bytes()
    (tmp_path / "t.vhd").write_bytes(data[: 2 * MiB] + data[-512:])  # truncated: block past EOF
    with pytest.raises(CorruptImage, match="past the end"):
        open_image(tmp_path / "t.vhd")
    with pytest.raises(UsageError, match="2040 GiB"):
        create_image(tmp_path / "huge.vhd", CreateSpec(size=2041 * GiB))
    assert not (tmp_path / "huge.vhd").exists()
    with pytest.raises(ConflictError):
        create_image(path, CreateSpec(size=MiB))
    with open_image(path) as img, pytest.raises(OutOfBounds):
        img.read(4 * MiB - 1, 2)


@pytest.mark.parametrize("child", ["c.avhd", "c.avhdx"])
def test_differencing_of_raw_parent_is_refused_without_leftovers(
    tmp_path: Path, child: str
) -> None:
    """A raw file has no identity a child could link to: a VHDX child of one used to be
    written, then could never be opened (identity mismatch)."""
    raw = tmp_path / "p.img"
    raw.write_bytes(b"r" * 1000)  # not even a whole sector
    with pytest.raises(UnsupportedFeature, match="not raw; convert the parent first"):
        create_image(tmp_path / child, CreateSpec(size=0, parent=str(raw)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.img"]


def test_fixed_is_sparse_until_written_and_zeroes_punch_holes(tmp_path: Path) -> None:
    path = tmp_path / "f.vhd"
    create_image(path, CreateSpec(size=4 * MiB, disk_type=DiskType.FIXED))
    with open_image(path, writable=True) as img:
        assert [e.state for e in img.extents()] == [ExtentState.ZERO]
        img.write(MiB, b"y" * MiB)
        assert (MiB, MiB, ExtentState.DATA) in [
            (e.offset, e.length, e.state) for e in img.extents()
        ]
        img.write_zeroes(MiB + 100, 1000)
        img.discard(MiB + 4096, 8192)
        got = img.read(MiB, 16384)
        assert got[:100] == b"y" * 100 and got[100:1100] == bytes(1000)
        assert set(got[4096 : 4096 + 8192]) <= {0, ord("y")}
        info = img.info()
    assert info.identifier and info.block_size == 0 and info.size == 4 * MiB
    assert check_vhd(path, repair=False) == []


def test_info_of_dynamic_disk(tmp_path: Path) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=10 * MiB))
    with open_image(path, writable=True) as img:
        img.write(3 * MiB, b"z")
        info = img.info()
    assert info.disk_type == DiskType.DYNAMIC
    assert info.allocated_bytes == 2 * MiB and info.block_size == 2 * MiB
    assert info.file_size == path.stat().st_size
    assert info.extra["creator"] == "win" and info.parent_path is None


def resized_with_a_stale_head(tmp_path: Path) -> Path:
    """A VHD grown from 1 to 2 MiB whose resize was killed before the footer copy at offset 0
    was rewritten."""
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=MiB))
    head = path.read_bytes()[:512]
    with open_image(path, writable=True) as img:
        img.resize(2 * MiB)
    with path.open("r+b") as f:
        f.write(head)
    return path


def test_resize_interrupted_between_footers_is_benign(tmp_path: Path) -> None:
    path = resized_with_a_stale_head(tmp_path)
    assert check_vhd(path, repair=False) == []
    with open_image(path) as img:
        assert img.size == 2 * MiB
    before = path.read_bytes()
    with pytest.raises(UnsupportedFeature, match="cannot shrink"), open_image(path, True) as img:
        img.resize(MiB)  # refused: the lagging copy stays as it is, like everything else
    assert path.read_bytes() == before
    with open_image(path, writable=True) as img:
        img.flush()  # the first flush finishes the resize
    assert path.read_bytes()[:512] == path.read_bytes()[-512:]


def test_legacy_511_byte_footer(tmp_path: Path) -> None:
    path = tmp_path / "old.vhd"
    create_image(path, CreateSpec(size=MiB, disk_type=DiskType.FIXED))
    with open_image(path, writable=True) as img:
        img.write(0, b"old")
    with path.open("r+b") as f:
        f.truncate(MiB + 511)  # pre-Virtual PC 2004 images end one reserved byte early
    with open_image(path) as img:
        assert img.size == MiB and img.read(0, 3) == b"old"
    assert check_vhd(path, repair=False) == []


def test_legacy_511_byte_footer_of_dynamic_disk(tmp_path: Path) -> None:
    """Its copy at offset 0 is the same 511 bytes: a writable open must not 'refresh' it with
    the file's last 512 bytes (shifting it off its cookie), nor check --repair 'fix' the end
    by writing 512 bytes over the last data byte."""
    path = tmp_path / "old.vhd"
    create_image(path, CreateSpec(size=4 * MiB, block_size=MiB))
    with open_image(path, writable=True) as img:
        img.write(0, b"old")
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 1)
    before = path.read_bytes()
    assert check_vhd(path, repair=False) == []
    assert check_vhd(path, repair=True) == [] and path.read_bytes() == before
    with open_image(path, writable=True) as img:
        img.write(2 * MiB, b"new")
    assert path.read_bytes()[:8] == b"conectix"
    assert check_vhd(path, repair=False) == []
    with open_image(path) as img:
        assert img.read(0, 3) == b"old" and img.read(2 * MiB, 3) == b"new"


def test_failed_writable_open_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """A copy at offset 0 lagging an interrupted resize is refreshed by a writable open, but
    only once the image proved sound: an open that fails changes nothing."""
    path = resized_with_a_stale_head(tmp_path)
    with path.open("r+b") as f:
        f.seek(1536)  # pyhv's BAT: entry 0 now points far past the end of the file
        f.write(b"\x00\x10\x00\x00")
    before = path.read_bytes()
    with pytest.raises(CorruptImage, match="past the end of the file"):
        open_image(path, writable=True)
    assert path.read_bytes() == before


def test_copies_differing_in_reserved_bytes_only_are_left_alone(tmp_path: Path) -> None:
    """Such a copy describes the same disk: no resize to finish, nothing to report, and a
    refused shrink (which opens the disk writable) must not rewrite it."""
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=2 * MiB))
    image = bytearray(path.read_bytes())
    image[200] = 0x7F  # the reserved area of the copy at offset 0; then a valid checksum again
    image[64:68] = bytes(4)
    image[64:68] = (~sum(image[:512]) & 0xFFFFFFFF).to_bytes(4, "big")
    path.write_bytes(image)
    before = path.read_bytes()
    assert check_vhd(path, repair=False) == []
    with pytest.raises(UnsupportedFeature, match="cannot shrink"), open_image(path, True) as img:
        img.resize(MiB)
    assert path.read_bytes() == before


def test_new_blocks_are_linked_at_flush_after_their_data(tmp_path: Path) -> None:
    base = tmp_path / "b.vhd"
    create_image(base, CreateSpec(size=4 * MiB))
    with open_image(base, writable=True) as img:
        img.write(0, b"P" * (4 * MiB))
    child = tmp_path / "c.avhd"
    create_image(child, CreateSpec(size=0, parent=str(base)))
    with open_image(child, writable=True) as img:
        img.write(0, b"new")  # allocates a block
        img.write(MiB, b"more")  # sets bits in the same block
        with open_image(child) as other:  # the file says: nothing written yet (old content)
            assert other.read(0, 4) == b"PPPP"
        assert check_vhd(child, repair=False) == []
        img.flush()
        with open_image(child) as other:
            assert other.read(0, 4) == b"newP" and other.read(MiB, 5) == b"moreP"
