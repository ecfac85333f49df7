"""Storage roots: absolute paths only, no '..', symlinks resolved before the check."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.errors import PermissionDenied, UsageError
from pyhv.model import VmConfig
from pyhv.service.confine import StorageRoots, confine_config, storage_roots


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "disks" / "sub").mkdir(parents=True)
    (tmp_path / "disks" / "sub" / "a.vhdx").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.vhdx").write_bytes(b"")
    return tmp_path


def test_inside_is_accepted(root: Path) -> None:
    roots = StorageRoots([root / "disks"])
    assert roots.confine(root / "disks" / "sub" / "a.vhdx") == (root / "disks/sub/a.vhdx").resolve()
    # A file that does not exist yet (a disk about to be created) is fine inside a root.
    assert roots.confine(str(root / "disks" / "new.vhdx")).name == "new.vhdx"


def test_outside_relative_and_dotdot(root: Path) -> None:
    roots = StorageRoots([root / "disks"])
    with pytest.raises(PermissionDenied, match="outside the storage roots"):
        roots.confine(root / "elsewhere" / "b.vhdx")
    with pytest.raises(PermissionDenied):
        roots.confine(str(root / "disks-evil" / "x"))  # a prefix is not a parent
    with pytest.raises(UsageError, match="not absolute"):
        roots.confine("disks/sub/a.vhdx")
    with pytest.raises(UsageError, match=r"'\.\.'"):
        roots.confine(f"{root}/disks/sub/../sub/a.vhdx")


def test_symlink_escapes_are_caught(root: Path) -> None:
    roots = StorageRoots([root / "disks"])
    (root / "disks" / "link.vhdx").symlink_to(root / "elsewhere" / "b.vhdx")
    (root / "disks" / "dir").symlink_to(root / "elsewhere")
    with pytest.raises(PermissionDenied, match="resolves to"):
        roots.confine(root / "disks" / "link.vhdx")
    with pytest.raises(PermissionDenied):
        roots.confine(root / "disks" / "dir" / "b.vhdx")


def test_roots_from_environment(tmp_path: Path) -> None:
    roots = storage_roots(tmp_path, {"PYHV_STORAGE_ROOTS": "/srv/a::/srv/b"})
    assert roots == [tmp_path / "disks", Path("/srv/a"), Path("/srv/b")]


def test_confine_config_checks_every_path(root: Path) -> None:
    roots = StorageRoots([root / "disks"])
    good = root / "disks" / "sub" / "a.vhdx"
    fields = {
        "name": "x",
        "scsi_controllers": [{"disks": [{"slot": 0, "path": str(good)}]}],
        "kernel": {"kernel": str(good), "initrd": str(good)},
        "dvd": {"path": str(good)},
    }
    config = VmConfig.model_validate(fields)
    assert confine_config(config, roots).scsi_controllers[0].disks[0].path == good.resolve()
    bad = root / "elsewhere" / "b.vhdx"
    for change in (
        {"kernel": {"kernel": str(good), "initrd": str(bad)}},
        {"dvd": {"path": str(bad)}},
        {"com2": {"mode": "pipe", "path": str(bad)}},
    ):
        with pytest.raises(PermissionDenied):
            confine_config(VmConfig.model_validate(fields | change), roots)
