from __future__ import annotations

import os
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
