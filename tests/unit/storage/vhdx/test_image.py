"""VhdxImage through the format driver: read/write/allocation, differencing, capabilities."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.errors import (
    ConflictError,
    CorruptImage,
    InvalidFormat,
    OutOfBounds,
    ParentError,
    StateError,
    StorageError,
    UsageError,
)
from pyhv.storage.image import CreateSpec, DiskType, ExtentState
from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.handle import VhdxFile
from pyhv.units import MiB

MakeImage = Callable[..., Path]
OpenChain = Callable[..., VhdxImage]


def fill_random(img: VhdxImage, model: bytearray, rnd: random.Random, n: int, max_len: int) -> None:
    for _ in range(n):
        length = rnd.randrange(1, max_len)
        off = rnd.randrange(0, len(model) - length)
        data = rnd.randbytes(length)
        img.write(off, data)
        model[off : off + length] = data


@pytest.mark.parametrize("logical", [512, 4096])
@pytest.mark.parametrize("disk_type", [DiskType.DYNAMIC, DiskType.FIXED])
def test_random_writes_read_back(make_image: MakeImage, logical: int, disk_type: DiskType) -> None:
    path = make_image(size=6 * MiB + logical, disk_type=disk_type, logical=logical)
    model = bytearray(6 * MiB + logical)
    rnd = random.Random(logical)
    with VhdxImage(path, writable=True) as img:
        assert img.disk_type is disk_type
        fill_random(img, model, rnd, 30, 300_000)
        assert img.read(0, img.size) == model
    with VhdxImage(path, writable=False) as img:
        assert img.read(0, img.size) == model
        assert img.logical_sector_size == logical
        assert img.read(12345, 777) == model[12345 : 12345 + 777]


def test_create_defaults_and_info(make_image: MakeImage) -> None:
    path = make_image(size=1_000_001, block_size=None)
    with VhdxImage(path, writable=False) as img:
        info = img.info()
    assert info.size == 1_000_448  # rounded up to the logical sector
    assert info.block_size == s.DEFAULT_BLOCK_SIZE
    assert info.physical_sector_size == 4096
    assert info.allocated_bytes == 0
    assert info.disk_type is DiskType.DYNAMIC
    assert len(info.identifier) == 36


def test_create_refuses_existing_file_and_bad_args(tmp_path: Path) -> None:
    path = tmp_path / "x.vhdx"
    path.write_bytes(b"keep")
    with pytest.raises(ConflictError):
        FORMAT.create(path, CreateSpec(size=MiB), None)
    assert path.read_bytes() == b"keep"
    for spec in (
        CreateSpec(size=MiB, block_size=3 * MiB),
        CreateSpec(size=0),
        CreateSpec(size=65 * 2**40),
        CreateSpec(size=MiB, logical_sector_size=4096, physical_sector_size=512),
    ):
        with pytest.raises(UsageError):
            FORMAT.create(tmp_path / "y.vhdx", spec, None)
        assert not (tmp_path / "y.vhdx").exists()


def test_first_write_changes_data_write_guid_only_once(make_image: MakeImage) -> None:
    path = make_image()
    with VhdxImage(path, writable=False) as img:
        before = img.identity
    with VhdxImage(path, writable=True) as img:
        assert img.identity == before  # opening writable alone changes nothing
        img.write(0, b"x")
        after = img.identity
        img.write(MiB, b"y")
        assert img.identity == after != before
    with VhdxImage(path, writable=False) as img:
        assert img.identity == after
        assert not img.header.log_pending  # clean close cleared LogGuid


def test_a_settled_identity_survives_the_first_write(make_image: MakeImage) -> None:
    """A running VM's checkpoint makes the child of the disk the guest writes, then stops
    the guest: the child must stay bound to the parent whatever the guest wrote between."""
    base = make_image(size=2 * MiB)
    with VhdxImage(base, writable=True) as img:
        before = img.identity
        img.settle_identity()
        settled = img.identity
        child = make_image(parent=base)
        img.write(0, b"guest")
        img.settle_identity()
        assert img.identity == settled != before
    with VhdxImage(child, writable=False) as c, VhdxImage(base, writable=False) as b:
        c.attach_parent(b)
        assert c.read(0, 5) == b"guest"
    with VhdxImage(base, writable=False) as img:
        img.settle_identity()  # read-only: nothing to take
        assert img.identity == settled


def test_extents_and_zeroing(make_image: MakeImage) -> None:
    path = make_image(size=4 * MiB)
    with VhdxImage(path, writable=True) as img:
        img.write(MiB + 10, b"abc")
        assert [(e.offset, e.length, e.state) for e in img.extents()] == [
            (0, MiB, ExtentState.ZERO),
            (MiB, MiB, ExtentState.DATA),
            (2 * MiB, 2 * MiB, ExtentState.ZERO),
        ]
        img.write_zeroes(MiB, MiB)
        assert img.extents() == img.extents(chain=False)
        assert all(e.state is ExtentState.ZERO for e in img.extents())
        img.write(0, b"\1" * (2 * MiB))
        img.discard(0, MiB + 5)
        assert img.read(0, 2) == b"\0\0"
        assert img.read(MiB, 1) == b"\1"


def test_out_of_bounds_and_read_only(make_image: MakeImage) -> None:
    path = make_image(size=MiB)
    with VhdxImage(path, writable=False) as img:
        with pytest.raises(OutOfBounds):
            img.read(MiB - 1, 2)
        with pytest.raises(StateError):
            img.write(0, b"x")
    img.close()
    with pytest.raises(StateError):
        img.read(0, 1)


def test_differencing_chain(make_image: MakeImage, open_chain: OpenChain) -> None:
    base = make_image(size=5 * MiB)
    model = bytearray(5 * MiB)
    rnd = random.Random(3)
    with VhdxImage(base, writable=True) as img:
        fill_random(img, model, rnd, 10, 200_000)
    paths = [base]
    for level in range(3):
        paths.append(make_image(parent=paths[-1], name=f"c{level}.avhdx"))
        with open_chain(paths) as top:
            assert top.disk_type is DiskType.DIFFERENCING
            fill_random(top, model, rnd, 15, 100_000)
            top.write_zeroes(2 * MiB, MiB)
            model[2 * MiB : 3 * MiB] = bytes(MiB)
            assert top.read(0, top.size) == model
    with open_chain(paths, writable_top=False) as top:
        assert top.read(0, top.size) == model
        exts = top.extents(chain=False)
        assert {e.state for e in exts} <= {ExtentState.DATA, ExtentState.BACKING, ExtentState.ZERO}
        assert top.parent_candidates()[0] == paths[-2]


def test_differencing_identity_checks(make_image: MakeImage) -> None:
    base = make_image(size=2 * MiB)
    child = make_image(parent=base)
    other = make_image(size=2 * MiB)
    with VhdxImage(child, writable=False) as c, VhdxImage(other, writable=False) as o:
        with pytest.raises(ParentError, match="identity mismatch"):
            c.attach_parent(o)
        with pytest.raises(ParentError, match="without its parent"):
            c.read(0, 10)
    with VhdxImage(base, writable=True) as b:
        b.write(0, b"changed")
    with (
        VhdxImage(child, writable=False) as c,
        VhdxImage(base, writable=False) as b,
        pytest.raises(ParentError),
    ):
        c.attach_parent(b)


def test_set_parent_locator_after_move(make_image: MakeImage, tmp_path: Path) -> None:
    base = make_image(size=2 * MiB, name="base.vhdx")
    child = make_image(parent=base, name="child.avhdx")
    (tmp_path / "moved").mkdir()
    moved = tmp_path / "moved" / "base.vhdx"
    os.rename(base, moved)
    with VhdxImage(child, writable=True) as c, VhdxImage(moved, writable=False) as b:
        ident = c.identity
        c.set_parent_locator(b, moved)
        assert c.identity == ident  # children of this child stay linked
    with VhdxImage(child, writable=False) as c:
        assert c.parent_candidates()[0] == moved
        assert c.params.parent_locator["relative_path"] == r".\moved\base.vhdx"


def test_resize_grow_shrink_and_minimum(make_image: MakeImage) -> None:
    path = make_image(size=4 * MiB)
    with VhdxImage(path, writable=True) as img:
        img.write(MiB, b"data")
        img.resize(3 * MiB + 512)
        assert img.size == 3 * MiB + 512
        assert img.info().minimum_size == 2 * MiB
        with pytest.raises(UsageError, match="minimum size is 2M"):
            img.resize(MiB)
        img.resize(2 * MiB)
        bat_before = img.regions.bat.file_offset
        img.resize(200 * 1024 * MiB)  # the BAT outgrows its region: moved, tables via the log
        assert img.regions.bat.file_offset != bat_before
        assert img.read(MiB, 4) == b"data"
        img.write(199 * 1024 * MiB, b"end")
    with VhdxImage(path, writable=False) as img:
        assert img.size == 200 * 1024 * MiB
        assert img.read(MiB, 4) == b"data"
        assert img.read(199 * 1024 * MiB, 3) == b"end"
        assert img.read(2 * MiB, MiB) == bytes(MiB)
    assert FORMAT.check(path, repair=False) == []


def test_resize_fixed_grows_allocated(make_image: MakeImage) -> None:
    path = make_image(size=2 * MiB, disk_type=DiskType.FIXED)
    with VhdxImage(path, writable=True) as img:
        img.write(0, b"a" * (2 * MiB))
        img.resize(4 * MiB)
        assert img.info().allocated_bytes == 4 * MiB
        assert img.read(2 * MiB, MiB) == bytes(MiB)


def test_resize_that_fails_to_get_space_leaves_the_file_as_it_was(
    make_image: MakeImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Growing a fixed disk past what the file system holds (ext4 stops at 16 TiB, or no space
    left) fails; the space taken before the failure is given back, not left as a huge file."""
    path = make_image(size=2 * MiB, disk_type=DiskType.FIXED)
    with VhdxImage(path, writable=True) as img:
        img.write(0, b"a" * (2 * MiB))
        img.flush()
    before = path.read_bytes()

    def no_space(self: VhdxFile, offset: int, length: int) -> None:
        raise StorageError(f"{self.path}: allocate failed: no space left on the device")

    with VhdxImage(path, writable=True) as img:
        with monkeypatch.context() as m:
            m.setattr(VhdxFile, "preallocate", no_space)
            with pytest.raises(StorageError, match="no space left"):
                img.resize(64 * MiB)
        assert img.size == 2 * MiB and path.read_bytes() == before
        img.resize(4 * MiB)  # the image stays usable
    with VhdxImage(path, writable=False) as img:
        assert img.size == 4 * MiB and img.read(MiB, 4) == b"aaaa"
    assert FORMAT.check(path, repair=False) == []


def test_compact_releases_zero_blocks_and_shrinks_file(make_image: MakeImage) -> None:
    path = make_image(size=8 * MiB)
    with VhdxImage(path, writable=True) as img:
        img.write(0, b"\0" * (6 * MiB))
        img.write(7 * MiB, b"tail")
        img.write(6 * MiB, b"\0" * 10)
        img.flush()
        before = os.path.getsize(path)
        calls: list[tuple[int, int]] = []
        freed = img.compact(lambda done, total: calls.append((done, total)))
        assert freed > 0 and os.path.getsize(path) == before - freed
        assert calls and calls[-1][0] == calls[-1][1]
        assert img.read(7 * MiB, 4) == b"tail"
        assert img.info().allocated_bytes == MiB
    with VhdxImage(path, writable=False) as img:
        assert img.read(7 * MiB, 4) == b"tail"
        assert img.read(0, 7 * MiB) == bytes(7 * MiB)
    assert FORMAT.check(path, repair=False) == []


def test_compact_differencing_keeps_blocks_hiding_parent_data(
    make_image: MakeImage, open_chain: OpenChain
) -> None:
    base = make_image(size=2 * MiB)
    with VhdxImage(base, writable=True) as b:
        b.write(0, b"\1" * MiB)
    child = make_image(parent=base, block_size=MiB)
    with open_chain([base, child]) as top:
        top.write(0, bytes(MiB))  # hides parent data: must stay
        top.write(MiB, bytes(MiB))  # parent reads zeros here: may go
        top.compact()
        assert top.read(0, 2 * MiB) == bytes(2 * MiB)
        states = [e.state for e in top.extents(chain=False)]
        assert states == [ExtentState.DATA, ExtentState.BACKING]


def test_concurrent_writers_and_readers(make_image: MakeImage) -> None:
    path = make_image(size=16 * MiB)
    errors: list[BaseException] = []
    with VhdxImage(path, writable=True) as img:

        def worker(k: int) -> None:
            try:
                for i in range(20):
                    off = (k * 20 + i) * 65536 * 3
                    img.write(off, bytes([k + 1]) * 65536)
                    assert img.read(off, 65536) == bytes([k + 1]) * 65536
            except BaseException as err:  # reported below
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert FORMAT.check(path, repair=False) == []


def test_bad_files(tmp_path: Path, make_image: MakeImage) -> None:
    empty = tmp_path / "empty.vhdx"
    empty.write_bytes(b"")
    with pytest.raises(InvalidFormat):
        VhdxImage(empty, writable=False)
    path = make_image(size=4 * MiB)
    with VhdxImage(path, writable=True) as img:
        img.write(3 * MiB, b"x" * MiB)
    os.truncate(path, os.path.getsize(path) - MiB)
    with pytest.raises(CorruptImage, match="after the end of the file"):
        VhdxImage(path, writable=False)
    os.truncate(path, 500_000)
    with pytest.raises(CorruptImage, match="truncated"):
        VhdxImage(path, writable=False)


def test_partial_block_becomes_fully_present(make_image: MakeImage, open_chain: OpenChain) -> None:
    base = make_image(size=2 * MiB)
    child = make_image(parent=base, block_size=MiB)
    with open_chain([base, child]) as top:
        top.write(0, b"a" * 1000)  # partial: sector bitmap in use
        index = top.geometry.payload_index(0)
        assert top.bat[index] & 7 == s.PayloadState.PARTIALLY_PRESENT
        top.write(1000, b"b" * (MiB - 1000))
        assert top.bat[index] & 7 == s.PayloadState.FULLY_PRESENT
        assert top.read(998, 4) == b"aabb"
    assert FORMAT.check(child, repair=False) == []


def test_discard_gives_space_back(make_image: MakeImage) -> None:
    path = make_image(size=8 * MiB)
    with VhdxImage(path, writable=True) as img:
        img.write(0, b"\x01" * (8 * MiB))
        img.flush()
        used = os.stat(path).st_blocks
        img.discard(0, 6 * MiB)
        assert os.stat(path).st_blocks <= used - 5 * MiB // 512
        assert img.read(0, 6 * MiB) == bytes(6 * MiB)
        assert img.read(6 * MiB, 10) == b"\x01" * 10
    assert FORMAT.check(path, repair=False) == []
