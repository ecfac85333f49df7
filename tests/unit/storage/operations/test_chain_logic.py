import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhv.storage.image import DiskType, ImageFormat
from pyhv.storage.operations.check import link_problems, unresolved
from pyhv.storage.operations.convert import default_type
from pyhv.storage.operations.merge import held_ranges
from pyhv.storage.operations.transfer import copy_ranges


def test_held_ranges_is_the_union_of_what_the_upper_layers_hold(mem) -> None:
    base = mem(8192, name="base")
    base.write(0, b"b" * 8192)
    mid = mem(8192, base, name="mid")
    mid.write(512, b"m")
    top = mem(8192, mid, name="top")
    top.write(1024, b"t" * 600)
    top.write(4096, b"t")
    assert held_ranges([top, mid]) == [(512, 1536), (4096, 512)]
    assert held_ranges([top]) == [(1024, 1024), (4096, 512)]


def test_link_problems_reports_identity_and_size(mem) -> None:
    parent = mem(8192, name="p")
    child = mem(4096, parent, name="c")
    child.parent_identity = b"\x01" * 16
    lines = link_problems(child, parent)
    assert len(lines) == 2
    assert "identity" in lines[0] and "c:" in lines[0]
    assert "larger" in lines[1]


def test_link_problems_accepts_the_right_parent(mem) -> None:
    parent = mem(4096, name="p")
    child = mem(4096, parent, name="c")
    child.parent_identity = parent.identity
    assert link_problems(child, parent) == []


def test_convert_keeps_fixed_and_makes_everything_else_dynamic(mem) -> None:
    disk = mem(4096)
    disk.disk_type = DiskType.FIXED
    assert default_type(disk) == DiskType.DYNAMIC  # raw: no type of its own
    disk.format = ImageFormat.VHDX
    assert default_type(disk) == DiskType.FIXED
    disk.disk_type = DiskType.DIFFERENCING
    assert default_type(disk) == DiskType.DYNAMIC


def test_unresolved_ignores_repaired_lines() -> None:
    lines = ["a: bad checksum (repaired)", "b: BAT entry 3 overlaps entry 1"]
    assert unresolved(lines) == ["b: BAT entry 3 overlaps entry 1"]
    assert unresolved(lines[:1]) == []


layer_writes = st.lists(
    st.tuples(st.integers(0, 31), st.integers(1, 2000), st.booleans()), max_size=6
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(layer_writes, layer_writes, layer_writes, st.integers(1, 2))
def test_merge_copy_never_changes_what_the_child_shows(mem, base_w, mid_w, top_w, depth) -> None:
    """The crash-safety argument of merge: after every single write into the ancestor, the
    child still reads exactly as before; at the end the ancestor reads like the child did."""
    size = 32 * 512
    base = mem(size, name="base")
    mid = mem(size, base, name="mid")
    top = mem(size, mid, name="top")
    for layer, writes in ((base, base_w), (mid, mid_w), (top, top_w)):
        for sector, n, zero in writes:
            n = min(n, size - sector * 512)
            layer.write(sector * 512, bytes(n) if zero else os.urandom(n))
    view = top.read(0, size)
    target = (mid, base)[depth - 1]
    real_write, real_zeroes = target.write, target.write_zeroes

    def write(offset: int, data: bytes) -> None:
        real_write(offset, data)
        assert top.read(0, size) == view

    def write_zeroes(offset: int, length: int) -> None:
        real_zeroes(offset, length)
        assert top.read(0, size) == view

    target.write, target.write_zeroes = write, write_zeroes  # type: ignore[method-assign]
    copy_ranges(top, target, held_ranges([top, mid][:depth]), dst_reads_zero=False)
    assert target.read(0, size) == view
