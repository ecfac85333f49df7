"""``pyhv vm …`` given what users get wrong — odd VM names, sizes without units, files that
are missing or belong to another VM — through a real pyhvd on a temporary home: one line on
stderr, exit 1 or 2, and nothing changed but what was asked for. No guest boots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyhvd_harness import Pyhvd

from pyhv.model import VmConfig
from pyhv.storage.create import create_image
from pyhv.storage.image import CreateSpec
from pyhv.units import MiB

PYHV = str(Path(sys.executable).with_name("pyhv"))


def run(d: Pyhvd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYHV, *args], env=d.env, capture_output=True, text=True, timeout=120)


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The error line of a refused command, checked to be the only output."""
    assert (result.returncode, result.stdout) == (code, ""), result.stderr
    assert result.stderr.startswith("pyhv: error: ") and result.stderr.count("\n") == 1, (
        result.stderr
    )
    return result.stderr.removeprefix("pyhv: error: ").rstrip("\n")


def names(d: Pyhvd) -> set[str]:
    return {v.name for v in d.client().list_vms()}


def test_odd_names_reach_their_own_vm(pyhvd: Pyhvd) -> None:
    """Names went into URLs unquoted: 'a?b' reached VM 'a', '%41' VM 'A', and 'é' ended in
    a traceback; an empty name got "pyhvd answered 307"."""
    c = pyhvd.client()
    for name in ("a", "A", "a?b", "%41", "é-ü", "a b", "100%"):
        c.create_vm(VmConfig(name=name, memory_startup_mib=64, boot_order=[]))
    # Rich read names as markup: 'x[bold]y' was shown as 'xy'.
    created = run(pyhvd, "vm", "new", "x[bold]y", "--memory", "64M")
    assert created.stdout.startswith("created VM 'x[bold]y' ("), created.stderr
    for name in ("a?b", "%41", "é-ü", "a b", "100%", "x[bold]y"):
        shown = run(pyhvd, "vm", "show", name)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.split()[1] == name.split()[0]
    assert run(pyhvd, "vm", "remove", "%41").returncode == 0
    assert run(pyhvd, "vm", "remove", "a?b").returncode == 0
    assert names(pyhvd) == {"a", "A", "é-ü", "a b", "100%", "x[bold]y"}
    assert one_line(run(pyhvd, "vm", "remove", ""), 2) == "VM name must not be empty"
    assert one_line(run(pyhvd, "vm", "start", ""), 2) == "VM name must not be empty"
    slash = one_line(run(pyhvd, "vm", "start", "a/b"), 2)
    assert slash == "no VM named 'a/b': VM names have no '/'"


def test_memory_without_a_unit_is_refused(pyhvd: Pyhvd) -> None:
    """512 is bytes, which became "startup memory 0 MiB is below the minimum"."""
    assert one_line(run(pyhvd, "vm", "new", "m", "--memory", "512"), 2) == (
        "--memory 512 is bytes, not a whole number of MiB: give a unit, e.g. 512M or 2G"
    )
    assert one_line(run(pyhvd, "vm", "new", "m", "--memory", "100K"), 2) == (
        "--memory 100K is not a whole number of MiB"
    )
    assert run(pyhvd, "vm", "new", "m", "--memory", str(256 * MiB)).returncode == 0
    assert pyhvd.client().get_vm("m").config.memory_startup_mib == 256
    assert "--memory 1000" in one_line(run(pyhvd, "vm", "set", "m", "--memory", "1000"), 2)


def test_new_refuses_missing_and_shared_files(pyhvd: Pyhvd) -> None:
    disks = pyhvd.home / "disks"
    create_image(disks / "root.vhdx", CreateSpec(size=8 * MiB))
    (disks / "vmlinuz").write_bytes(b"kernel")
    assert run(pyhvd, "vm", "new", "web", "--disk", str(disks / "root.vhdx")).returncode == 0

    # Two VMs writing one disk corrupt it: refused as `vm disk add` refuses it.
    assert one_line(run(pyhvd, "vm", "new", "db", "--disk", str(disks / "root.vhdx")), 2) == (
        f"disk {disks / 'root.vhdx'} is attached to VM 'web' (SCSI 0:0); remove it there first"
    )
    missing = disks / "none.vhdx"
    assert one_line(run(pyhvd, "vm", "new", "db", "--disk", str(missing)), 2) == (
        f"disk 0:0 {missing}: no such file"
    )
    # A missing kernel failed only at start, as "QEMU's monitor did not answer within 30 s".
    assert one_line(run(pyhvd, "vm", "new", "db", "--kernel", str(disks / "bzImage")), 2) == (
        f"kernel {disks / 'bzImage'}: no such file"
    )
    no_initrd = ["--kernel", str(disks / "vmlinuz"), "--initrd", str(disks / "initrd")]
    assert "initrd" in one_line(run(pyhvd, "vm", "new", "db", *no_initrd), 2)
    assert "is not a file" in one_line(run(pyhvd, "vm", "new", "db", "--disk", str(disks)), 2)
    # --initrd and --cmdline were dropped without a word when --kernel was missing.
    assert "give --kernel too" in one_line(run(pyhvd, "vm", "new", "db", "--cmdline", "quiet"), 2)
    assert names(pyhvd) == {"web"}


def test_set_qos_with_nothing_to_set(pyhvd: Pyhvd) -> None:
    """It printed "QoS … set" having changed nothing."""
    disks = pyhvd.home / "disks"
    create_image(disks / "root.vhdx", CreateSpec(size=8 * MiB))
    assert run(pyhvd, "vm", "new", "web", "--disk", str(disks / "root.vhdx")).returncode == 0
    refused = one_line(run(pyhvd, "vm", "disk", "set-qos", "web", "--slot", "0"), 2)
    assert refused.startswith("nothing to change for SCSI 0:0 of VM 'web'")


def test_timeouts_are_checked_as_the_option(pyhvd: Pyhvd) -> None:
    """pyhvd's refusal named its query parameter; `vm exec` ended in a pydantic traceback."""
    pyhvd.client().create_vm(VmConfig(name="web", memory_startup_mib=64, boot_order=[]))
    expected = "--timeout 0: give seconds, more than 0 and at most 3600"
    assert one_line(run(pyhvd, "vm", "exec", "web", "--timeout", "0", "--", "true"), 2) == expected
    assert one_line(run(pyhvd, "vm", "stop", "web", "--timeout", "0"), 2) == expected
    wait = ["--wait-ready", "--timeout", "5000"]
    assert "--timeout 5000" in one_line(run(pyhvd, "vm", "start", "web", *wait), 2)
    assert pyhvd.client().get_vm("web").status.state == "Off"


def test_compare_and_import_of_what_is_no_export(pyhvd: Pyhvd) -> None:
    """A file, a folder as vm.json, a broken policy.json: each was pyhvd's internal error."""
    disks = pyhvd.home / "disks"
    (disks / "file.iso").write_bytes(b"\0" * 512)
    assert one_line(run(pyhvd, "vm", "compare", str(disks / "file.iso")), 2) == (
        f"{disks / 'file.iso'} is not a pyhv export: it is not a folder"
    )
    assert "not a folder" in one_line(run(pyhvd, "vm", "import", str(disks / "file.iso")), 2)
    (disks / "odd" / "vm.json").mkdir(parents=True)
    assert one_line(run(pyhvd, "vm", "compare", str(disks / "odd")), 2) == (
        f"{disks / 'odd'} is not a pyhv export: its vm.json is a folder"
    )
    folder = disks / "exp"
    folder.mkdir()
    (folder / "vm.json").write_text(VmConfig(name="x", memory_startup_mib=64).model_dump_json())
    (folder / "policy.json").write_text('{"weight": "heavy"}')
    assert one_line(run(pyhvd, "vm", "compare", str(folder)), 2).startswith(
        f"{folder / 'policy.json'}: weight:"
    )


@pytest.mark.integration
def test_a_failed_job_is_one_line(pyhvd: Pyhvd) -> None:
    """Off a terminal the progress display left an empty line on stderr before the error."""
    disks = pyhvd.home / "disks"
    create_image(disks / "gone.vhdx", CreateSpec(size=8 * MiB))
    assert run(pyhvd, "vm", "new", "web", "--disk", str(disks / "gone.vhdx")).returncode == 0
    (disks / "gone.vhdx").unlink()
    assert "no such file" in one_line(run(pyhvd, "vm", "start", "web"), 1)


@pytest.mark.integration
def test_a_kernel_deleted_after_new_fails_the_start_with_qemus_words(pyhvd: Pyhvd) -> None:
    """QEMU's monitor broke off as QEMU exited, and most starts then said "QEMU's monitor did
    not answer within 30 s" instead of QEMU's own line."""
    kernel = pyhvd.home / "disks" / "vmlinuz"
    kernel.write_bytes(b"kernel")
    pyhvd.client().create_vm(
        VmConfig.model_validate(
            {"name": "web", "memory_startup_mib": 64, "kernel": {"kernel": str(kernel)}}
        )
    )
    kernel.unlink()
    for _ in range(5):  # it was a race: most starts lost it
        assert one_line(run(pyhvd, "vm", "start", "web"), 1) == (
            f"QEMU failed to start: qemu: could not open kernel file '{kernel}': "
            "No such file or directory"
        )


@pytest.mark.integration
def test_removing_a_saved_vm_asks_first(pyhvd: Pyhvd) -> None:
    """Its saved memory, what the guest had not written to disk, went without a word."""
    c = pyhvd.client()
    c.create_vm(VmConfig(name="web", memory_startup_mib=64, boot_order=[]))
    c.start("web", wait=True)
    c.save("web", wait=True)
    assert one_line(run(pyhvd, "vm", "remove", "web"), 2) == (
        "VM 'web' is Saved: removing it discards its saved memory state; pass --yes, "
        "or start it and shut it down first"
    )
    assert c.get_vm("web").status.state == "Saved"
    removed = run(pyhvd, "vm", "remove", "web", "--yes")
    assert removed.stdout == "removed VM 'web'; its disks were kept\n", removed.stderr
    assert names(pyhvd) == set()
