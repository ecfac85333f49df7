from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.guestkit import libraries
from pyhv.guestkit.libraries import Found

LOADER = "/lib64/ld-linux-x86-64.so.2"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_absolute_symlinks_stay_inside_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "libc6"
    target = write(root / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", b"loader")
    (root / "lib64").mkdir()
    (root / "lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    assert libraries.resolve_in_tree(root, LOADER) == target


def test_relative_symlink_chain_and_missing_target(tmp_path: Path) -> None:
    root = tmp_path / "glib"
    libdir = root / "usr/lib/x86_64-linux-gnu"
    real = write(libdir / "libglib-2.0.so.0.7400.6", b"glib")
    (libdir / "libglib-2.0.so.0").symlink_to("libglib-2.0.so.0.7400.6")
    (libdir / "libdangling.so.1").symlink_to("../nowhere.so")
    assert libraries.resolve_in_tree(root, "usr/lib/x86_64-linux-gnu/libglib-2.0.so.0") == real
    assert libraries.resolve_in_tree(root, "usr/lib/x86_64-linux-gnu/libdangling.so.1") is None


def test_symlink_loop_is_not_followed_forever(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    assert libraries.resolve_in_tree(tmp_path, "a") is None


def make_trees(tmp_path: Path, elf_file: Callable[..., bytes]) -> dict[str, Path]:
    agent, glib, libc = tmp_path / "agent", tmp_path / "glib", tmp_path / "libc6"
    write(agent / "usr/sbin/qemu-ga", elf_file(["libglib-2.0.so.0", "libc.so.6"], LOADER))
    write(glib / "usr/lib/x86_64-linux-gnu/libglib-2.0.so.0", elf_file(["libc.so.6"]))
    write(libc / "lib/x86_64-linux-gnu/libc.so.6", elf_file([], None))
    write(libc / "lib64/ld-linux-x86-64.so.2", elf_file([], None))
    return {"qemu-guest-agent": agent, "libglib2.0-0": glib, "libc6": libc}


def test_closure_finds_loader_and_libraries_once(
    tmp_path: Path, elf_file: Callable[..., bytes]
) -> None:
    trees = make_trees(tmp_path, elf_file)
    program = Found("usr/sbin/qemu-ga", trees["qemu-guest-agent"] / "usr/sbin/qemu-ga", "agent")
    found = libraries.closure([program], trees)
    assert sorted(f.guest_path for f in found) == [
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib64/ld-linux-x86-64.so.2",
        "usr/lib/x86_64-linux-gnu/libglib-2.0.so.0",
    ]
    assert {f.owner for f in found} == {"libc6", "libglib2.0-0"}


def test_missing_library_names_the_package_that_needs_it(
    tmp_path: Path, elf_file: Callable[..., bytes]
) -> None:
    trees = make_trees(tmp_path, elf_file)
    del trees["libglib2.0-0"]
    source = trees["qemu-guest-agent"] / "usr/sbin/qemu-ga"
    program = Found("usr/sbin/qemu-ga", source, "qemu-guest-agent")
    with pytest.raises(libraries.MissingLibrary) as err:
        libraries.closure([program], trees)
    assert (err.value.soname, err.value.needed_by) == ("libglib-2.0.so.0", "qemu-guest-agent")
