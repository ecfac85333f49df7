from pyhv.storage.image import DiskType, ImageFormat
from pyhv.storage.operations.check import link_problems, unresolved
from pyhv.storage.operations.convert import default_type
from pyhv.storage.operations.merge import held_ranges


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
