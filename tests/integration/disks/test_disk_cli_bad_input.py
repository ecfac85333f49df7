"""`pyhv vm disk` / `pyhv vm dvd` (through pyhvd) refuse bad input with one line on stderr and
exit code 2, and leave vm.json exactly as it was. No guest boots here."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.storage import CreateSpec, create_image
from pyhv.units import MiB
from pyhv.worker.local import LocalHost

pytestmark = pytest.mark.integration

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def files(host: LocalHost, cli: Cli) -> dict[str, Path]:
    """VM 'a' with a disk in 0:0, VM 'b' empty, and files of every sort in the storage root."""
    home = host.paths.home / "disks"
    home.mkdir()
    out = {"disk": home / "a.vhdx", "free": home / "free.vhdx", "text": home / "notes.txt"}
    for key in ("disk", "free"):
        create_image(out[key], CreateSpec(size=4 * MiB))
    out["text"].write_text("not a disk\n")
    out["fake"] = home / "fake.vhdx"
    out["fake"].write_bytes(bytes(MiB))
    for name in ("a", "b"):
        assert cli("vm", "new", name).returncode == 0
    assert cli("vm", "disk", "add", "a", str(out["disk"])).returncode == 0
    return out


CASES = [
    (["add", "a", "{free}", "--slot", "0"], "SCSI slot 0:0 of VM 'a' is taken by {disk}"),
    (["add", "a", "{free}", "--controller", "4"], "SCSI controller 4 is outside 0–3"),
    (["add", "a", "{free}", "--controller", "-1"], "SCSI controller -1 is outside 0–3"),
    (["add", "a", "{free}", "--slot", "256"], "SCSI slot 256 is outside 0–255"),
    (["add", "a", "{home}/missing.vhdx"], "{home}/missing.vhdx: no such file"),
    (["add", "a", "{text}"], "{text} is not a disk image: its size (11 bytes) is not a non-zero"),
    (["add", "a", "{fake}"], "{fake}: not a VHDX file (no 'vhdxfile' signature)"),
    (["add", "a", "{disk}", "--slot", "4"], "disk {disk} is already attached to VM 'a' (SCSI 0:0)"),
    (["add", "b", "{disk}"], "disk {disk} is attached to VM 'a' (SCSI 0:0); remove it there first"),
    (["add", "a", "{free}", "--max-bandwidth", "lots"], "invalid size 'lots'"),
    (["add", "zz", "{free}"], "no VM named 'zz'"),
    (["remove", "a", "--slot", "3"], "VM 'a' has no disk in SCSI slot 0:3"),
    (["set-qos", "a", "--slot", "0", "--max-iops", "-5"], "--max-iops -5: give a positive number"),
    (["add", "a", "{free}", "--max-iops", "-1"], "--max-iops -1: give a positive number"),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_bad_disk_commands(
    host: LocalHost, cli: Cli, files: dict[str, Path], args: list[str], message: str
) -> None:
    names = {k: str(v) for k, v in files.items()} | {"home": str(host.paths.home / "disks")}
    before = {c.name: c for c in host.inventory.list()}
    result = cli("vm", "disk", *[a.format(**names) for a in args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyhv: error: ")
    assert message.format(**names) in lines[0]
    assert {c.name: c for c in host.inventory.list()} == before


def test_bad_dvd_commands(host: LocalHost, cli: Cli, files: dict[str, Path]) -> None:
    before = host.get("b")
    eject = cli("vm", "dvd", "eject", "b")
    assert (eject.returncode, eject.stderr) == (2, "pyhv: error: VM 'b' has no DVD drive\n")
    missing = cli("vm", "dvd", "set", "b", str(host.paths.home / "disks" / "none.iso"))
    assert missing.returncode == 2 and "none.iso: no such file" in missing.stderr
    assert host.get("b") == before


def test_files_outside_the_storage_roots_are_refused(
    host: LocalHost, cli: Cli, files: dict[str, Path]
) -> None:
    before = {c.name: c for c in host.inventory.list()}
    outside = host.paths.home / "outside.vhdx"
    create_image(outside, CreateSpec(size=4 * MiB))
    for what, args in (("disk", ["disk", "add"]), ("DVD image", ["dvd", "set"])):
        result = cli("vm", *args, "b", str(outside))
        assert result.returncode == 1, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"pyhv: error: {what} {outside} is outside the storage roots")
    assert {c.name: c for c in host.inventory.list()} == before
