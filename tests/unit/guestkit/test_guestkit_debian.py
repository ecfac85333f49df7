from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from pyhv.guestkit import debian


def test_deb_filename_with_epoch() -> None:
    pkg = debian.parse_deb_filename("qemu-guest-agent_1%3a7.2+dfsg-7+deb12u18+b3_amd64.deb")
    assert (pkg.name, pkg.version, pkg.arch) == (
        "qemu-guest-agent",
        "1:7.2+dfsg-7+deb12u18+b3",
        "amd64",
    )
    assert pkg.pin == "qemu-guest-agent=1:7.2+dfsg-7+deb12u18+b3"


def test_bad_filename_is_refused() -> None:
    with pytest.raises(debian.AptError, match="unexpected package file name"):
        debian.parse_deb_filename("README.txt")


def test_depends_takes_first_alternative_without_versions() -> None:
    field = (
        "libc6 (>= 2.34), libglib2.0-0 (>= 2.75.3), python3:any, default-mta | mail-transport-agent"
    )
    assert debian.parse_depends(field) == ["libc6", "libglib2.0-0", "python3", "default-mta"]
    assert debian.parse_depends("") == []


def test_apt_lists_stamp_changes_when_lists_change(tmp_path: Path) -> None:
    (tmp_path / "bookworm_Packages").write_text("a")
    before = debian.apt_lists_stamp(tmp_path)
    assert debian.apt_lists_stamp(tmp_path) == before
    (tmp_path / "bookworm_Packages").write_text("ab")
    os.utime(tmp_path / "bookworm_Packages", ns=(1, 1))
    assert debian.apt_lists_stamp(tmp_path) != before


def test_resolved_get_names_missing_package() -> None:
    resolved = debian.Resolved("k", (debian.Package("k", "1", "amd64", "k_1_amd64.deb"),))
    assert resolved.get("k").version == "1"
    with pytest.raises(debian.NotFoundError, match="busybox-static"):
        resolved.get("busybox-static")


class FakeRepository(debian.Repository):
    """apt without apt: packages are folders under ``tmp_path``, Depends come from a table."""

    def __init__(self, root: Path, depends: dict[str, str], trees: dict[str, Path]) -> None:
        super().__init__(root)
        self.depends = depends
        self.fake_trees = trees
        self.downloaded: list[str] = []

    def download(self, names: Iterable[str]) -> list[debian.Package]:
        names = list(names)
        self.downloaded += names
        self.debs.mkdir(parents=True, exist_ok=True)
        packages = [debian.Package(n, "1.0", "amd64", f"{n}_1.0_amd64.deb") for n in names]
        for pkg in packages:
            (self.debs / pkg.filename).touch()
        return packages

    def control(self, pkg: debian.Package, field: str) -> str:
        return self.depends.get(pkg.name, "")

    def tree(self, pkg: debian.Package) -> Path:
        return self.fake_trees.get(pkg.name) or (self.trees / pkg.name)


def test_resolve_adds_only_the_library_packages_the_agent_needs(
    tmp_path: Path, elf_file: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def tree(name: str, files: dict[str, bytes]) -> Path:
        root = tmp_path / "trees" / name
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        root.mkdir(parents=True, exist_ok=True)
        return root

    loader = "/lib64/ld-linux-x86-64.so.2"
    trees = {
        "qemu-guest-agent": tree(
            "qemu-guest-agent",
            {"usr/sbin/qemu-ga": elf_file(["libglib-2.0.so.0", "libc.so.6"], loader)},
        ),
        "libglib2.0-0": tree(
            "libglib2.0-0", {"usr/lib/x86_64-linux-gnu/libglib-2.0.so.0": elf_file(["libc.so.6"])}
        ),
        "libc6": tree(
            "libc6",
            {
                "lib/x86_64-linux-gnu/libc.so.6": elf_file(),
                "lib64/ld-linux-x86-64.so.2": elf_file(),
            },
        ),
    }
    depends = {
        "linux-image-cloud-amd64": "linux-image-6.1.0-9-cloud-amd64 (= 6.1.1-1)",
        "qemu-guest-agent": "libc6 (>= 2.34), libglib2.0-0 (>= 2.74)",
        "libglib2.0-0": "libc6, libffi8, libpcre2-8-0",
    }
    monkeypatch.setattr(debian, "APT_LISTS", tmp_path / "lists")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "x_Packages").write_text("")
    repo = FakeRepository(tmp_path / "cache", depends, trees)
    resolved = debian.resolve(repo)

    assert resolved.kernel == "linux-image-6.1.0-9-cloud-amd64"
    names = {p.name for p in resolved.packages}
    assert names == {
        "linux-image-cloud-amd64",
        "linux-image-6.1.0-9-cloud-amd64",
        "qemu-guest-agent",
        "busybox-static",
        "libc6",
        "libglib2.0-0",
    }
    # Remembered: the next resolve asks apt nothing.
    repo.downloaded.clear()
    assert debian.resolve(repo) == resolved
    assert repo.downloaded == []
