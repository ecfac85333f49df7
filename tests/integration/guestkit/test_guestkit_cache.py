"""The kit built from real Debian packages: cached, idempotent, and what ``path --json`` says."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from pyhv.cli.app import app
from pyhv.guestkit import build_kit, kit_paths

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get and dpkg-deb"),
]


def test_second_build_reuses_the_kit_untouched() -> None:
    first = build_kit()
    stamps = {p: p.stat().st_mtime_ns for p in (first.kernel, first.initrd, first.rootdisk)}
    assert build_kit() == first
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert kit_paths() == first


def test_path_json_names_the_kit_files() -> None:
    paths = build_kit()
    result = CliRunner().invoke(app, ["guest-kit", "path", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["kernel"] == str(paths.kernel)
    assert printed["initrd"] == str(paths.initrd)
    assert printed["rootdisk"].endswith(".vhdx")
    assert "console=ttyS0" in printed["cmdline"]


def test_root_disk_is_an_ext4_labelled_pyhvroot() -> None:
    from pyhv.storage import open_image

    with open_image(build_kit().rootdisk) as image:
        superblock = image.read(1024, 1024)
    assert superblock[0x38:0x3A] == b"\x53\xef"
    assert superblock[0x78:0x88].rstrip(b"\0") == b"pyhvroot"
