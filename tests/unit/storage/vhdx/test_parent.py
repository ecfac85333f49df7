import uuid
from pathlib import Path

from pyhv.storage.vhdx.parent import build_locator, candidate_paths, linkage_identity


def test_build_locator_relative_and_absolute(tmp_path: Path) -> None:
    ident = uuid.uuid4().bytes_le
    loc = build_locator(ident, tmp_path / "base" / "p.vhdx", tmp_path / "kids" / "c.avhdx")
    assert loc["relative_path"] == r"..\base\p.vhdx"
    assert loc["absolute_win32_path"] == str(tmp_path / "base" / "p.vhdx")
    assert linkage_identity(loc) == ident
    same_dir = build_locator(ident, tmp_path / "p.vhdx", tmp_path / "c.avhdx")
    assert same_dir["relative_path"] == r".\p.vhdx"


def test_candidates_in_spec_order(tmp_path: Path) -> None:
    child = tmp_path / "d" / "c.avhdx"
    loc = {
        "parent_linkage": "{" + str(uuid.uuid4()) + "}",
        "relative_path": r".\sub\p.vhdx",
        "volume_path": r"\\?\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\x\p.vhdx",
        "absolute_win32_path": r"\\?\C:\VMs\p.vhdx",
    }
    assert candidate_paths(loc, child) == [
        tmp_path / "d" / "sub" / "p.vhdx",
        tmp_path / "d" / "p.vhdx",
        Path("/mnt/c/VMs/p.vhdx"),
    ]


def test_posix_absolute_path_is_taken_as_is(tmp_path: Path) -> None:
    loc = {"parent_linkage": "{0}", "absolute_win32_path": "/srv/p.vhdx"}
    assert candidate_paths(loc, tmp_path / "c.avhdx") == [Path("/srv/p.vhdx"), tmp_path / "p.vhdx"]
