from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyhv.errors import NotFoundError
from pyhv.guestkit import build
from pyhv.guestkit.debian import Package

PACKAGES = [
    Package("busybox-static", "1:1.35.0-4", "amd64", "b.deb"),
    Package("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", "amd64", "k.deb"),
]
CODE = {"build.py": b"code", "guest/init": b"#!/bin/sh\n"}


def key(
    code: dict[str, bytes] = CODE, packages: list[Package] = PACKAGES, cmdline: str = "c"
) -> str:
    return build.cache_key(code, packages, cmdline)


def test_key_is_stable_and_ignores_package_order() -> None:
    assert key() == key(packages=list(reversed(PACKAGES)))


def test_key_changes_with_each_input() -> None:
    newer = [PACKAGES[0], Package(PACKAGES[1].name, "6.1.193-1", "amd64", "k2.deb")]
    keys = {
        key(),
        key(packages=newer),
        key(code={**CODE, "guest/init": b"#!/bin/sh\necho changed\n"}),
        key(code={**CODE, "new.py": b""}),
        key(cmdline="console=ttyS0"),
    }
    assert len(keys) == 5


def test_code_files_cover_the_guest_scripts() -> None:
    names = set(build.code_files())
    assert {"build.py", "guest/init", "guest/stage1", "guest/inittab"} <= names


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PYHV_GUESTKIT_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_dir() == tmp_path / "xdg/pyhv/guestkit"
    monkeypatch.setenv("PYHV_GUESTKIT_DIR", str(tmp_path / "kit"))
    assert build.cache_dir() == tmp_path / "kit"


def test_kit_paths_without_a_build_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="pyhv guest-kit build") as err:
        build.kit_paths(tmp_path)
    assert "\n" not in str(err.value)


def test_kit_paths_of_a_finished_kit(tmp_path: Path) -> None:
    (tmp_path / "kits/abc").mkdir(parents=True)
    (tmp_path / "kits/abc/kit.json").write_text("{}")
    (tmp_path / "current.json").write_text(json.dumps({"key": "abc"}))
    paths = build.kit_paths(tmp_path)
    assert paths.rootdisk == tmp_path / "kits/abc/rootdisk.vhdx"
    assert set(paths.as_json()) >= {"kernel", "initrd", "rootdisk", "cmdline"}
