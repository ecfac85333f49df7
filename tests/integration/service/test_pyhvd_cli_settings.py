"""``pyhv vm set``, ``export``, ``compare`` and ``import`` as a user runs them, through a real
pyhvd on a temporary home; every refusal is one line on stderr with exit code 1 or 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pyhvd_harness import Pyhvd

from pyhv.model import VmConfig
from pyhv.storage.create import create_image
from pyhv.storage.image import CreateSpec
from pyhv.storage.operations import check_chain
from pyhv.units import MiB

PYHV = str(Path(sys.executable).with_name("pyhv"))


def run(d: Pyhvd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYHV, *args], env=d.env, capture_output=True, text=True, timeout=120)


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The error line of a refused command, checked to be the only output."""
    assert (result.returncode, result.stdout) == (code, ""), result.stderr
    assert result.stderr.startswith("pyhv: error: ") and result.stderr.count("\n") == 1
    return result.stderr.removeprefix("pyhv: error: ").rstrip("\n")


def test_vm_set(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(VmConfig(name="web", memory_startup_mib=64, boot_order=[]))
    done = run(
        pyhvd, "vm", "set", "web", "--cpus", "2", "--memory", "128M", "--hugepages",
        "--cpu-limit", "50", "--notes", "front end", "--automatic-stop-action", "turn_off",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines[0] == "VM 'web' set:"
    assert "Processors 2" in lines
    assert "Processor policy limit 50 %, reserve 0 %, weight 100" in lines
    assert "Startup memory 128 MiB (2 MiB pages required)" in lines
    assert "Automatic stop turn_off" in lines and "Notes front end" in lines
    view = c.get_vm("web")
    assert (view.config.processor_count, view.config.memory_startup_mib) == (2, 128)
    assert view.config.memory_hugepages and view.config.notes == "front end"

    # One policy option keeps the others, though pyhvd replaces a policy whole.
    assert run(pyhvd, "vm", "set", "web", "--cpu-weight", "300").returncode == 0
    policy = c.get_vm("web").policy
    assert (policy.limit_percent, policy.weight) == (50, 300)
    renamed = run(pyhvd, "vm", "set", "web", "--new-name", "www", "--no-hugepages")
    assert renamed.returncode == 0, renamed.stderr
    assert not c.get_vm("www").config.memory_hugepages

    assert one_line(run(pyhvd, "vm", "set", "nobody", "--cpus", "2"), 2).startswith("no VM")
    assert "invalid size '12Q'" in one_line(run(pyhvd, "vm", "set", "www", "--memory", "12Q"), 2)
    assert one_line(run(pyhvd, "vm", "set", "www", "--cpu-limit", "150"), 2) == (
        "--cpu-limit 150: input should be less than or equal to 100"
    )
    assert "nothing to change" in one_line(run(pyhvd, "vm", "set", "www"), 2)
    assert "processor" in one_line(run(pyhvd, "vm", "set", "www", "--cpus", "99999"), 2)
    assert "--automatic-start-action" in one_line(
        run(pyhvd, "vm", "set", "www", "--automatic-start-action", "always"), 2
    )
    c.create_vm(VmConfig(name="other", memory_startup_mib=64, boot_order=[]))
    assert "already exists" in one_line(run(pyhvd, "vm", "set", "other", "--new-name", "www"), 2)


@pytest.mark.integration
def test_vm_set_while_running(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(VmConfig(name="busy", memory_startup_mib=64, boot_order=[]))
    c.start("busy", wait=True)
    try:
        refused = one_line(run(pyhvd, "vm", "set", "busy", "--hugepages"), 1)
        assert refused == (
            "cannot change huge pages of VM 'busy': it is Running; turn it off first"
        )
        assert not c.get_vm("busy").config.memory_hugepages
        live = run(pyhvd, "vm", "set", "busy", "--notes", "live", "--cpu-weight", "200")
        assert live.returncode == 0, live.stderr
        assert "Running" in live.stdout
        assert c.get_vm("busy").policy.weight == 200
    finally:
        c.turn_off("busy", wait=True)


def test_export_compare_import(pyhvd: Pyhvd) -> None:
    disks = pyhvd.home / "disks"
    create_image(disks / "base.vhdx", CreateSpec(size=8 * MiB))
    create_image(disks / "child.avhdx", CreateSpec(size=0, parent=str(disks / "base.vhdx")))
    c = pyhvd.client()
    config = VmConfig.model_validate(
        {
            "name": "exp",
            "memory_startup_mib": 64,
            "scsi_controllers": [{"disks": [{"slot": 0, "path": str(disks / "child.avhdx")}]}],
        }
    )
    original = c.create_vm(config).config.id
    folder = disks / "exp1"

    exported = run(pyhvd, "vm", "export", "exp", str(folder))
    assert (exported.returncode, exported.stdout) == (0, f"exported VM 'exp' to {folder}\n")
    assert check_chain(folder / "disks" / "0.0-child.avhdx") == []
    assert "already exists" in one_line(run(pyhvd, "vm", "export", "exp", str(folder)), 2)
    assert "outside" in one_line(run(pyhvd, "vm", "export", "exp", "/tmp/elsewhere-exp"), 1)

    clash = run(pyhvd, "vm", "compare", str(folder))
    assert clash.returncode == 1, clash.stderr
    assert clash.stdout.splitlines()[0] == f"VM 'exp' ({original}) cannot be imported (register):"
    assert "a VM named 'exp' already exists" in clash.stdout
    report = json.loads(run(pyhvd, "vm", "compare", str(folder), "--json").stdout)
    assert report["compatible"] is False and len(report["problems"]) == 2
    refused = one_line(run(pyhvd, "vm", "import", str(folder)), 2)
    assert refused.startswith(f"cannot import 'exp': a VM with id {original} already exists")
    assert refused.endswith(f"(and 1 more); see `pyhv vm compare {folder}`")
    assert "is not a pyhv export" in one_line(run(pyhvd, "vm", "import", str(disks)), 2)
    both = run(pyhvd, "vm", "import", str(folder), "--register", "--copy")
    assert "--register" in one_line(both, 2)

    c.remove_vm("exp")
    fits = run(pyhvd, "vm", "compare", str(folder), "--new-id")
    assert (fits.returncode, fits.stdout) == (
        0,
        f"VM 'exp' ({original}) can be imported (copy-new-id)\n",
    )
    registered = run(pyhvd, "vm", "import", str(folder))
    assert registered.stdout == f"imported VM 'exp' ({original}): it is Off\n", registered.stderr
    assert c.get_vm("exp").config.scsi_controllers[0].disks[0].path.parent == folder / "disks"

    c.remove_vm("exp")
    copied = run(pyhvd, "vm", "import", str(folder), "--new-id")
    assert copied.returncode == 0, copied.stderr
    new_id = c.get_vm("exp").config.id
    assert new_id != original and copied.stdout == f"imported VM 'exp' ({new_id}): it is Off\n"


def test_import_twice_under_a_new_name(pyhvd: Pyhvd) -> None:
    disks = pyhvd.home / "disks"
    create_image(disks / "web.vhdx", CreateSpec(size=8 * MiB))
    c = pyhvd.client()
    config = VmConfig.model_validate(
        {
            "name": "web",
            "memory_startup_mib": 64,
            "scsi_controllers": [{"disks": [{"slot": 0, "path": str(disks / "web.vhdx")}]}],
        }
    )
    original = c.create_vm(config).config.id
    folder = disks / "web-export"
    assert run(pyhvd, "vm", "export", "web", str(folder)).returncode == 0
    c.remove_vm("web")
    first = run(pyhvd, "vm", "import", str(folder))
    assert first.stdout == f"imported VM 'web' ({original}): it is Off\n", first.stderr

    clash = run(pyhvd, "vm", "compare", str(folder), "--new-id")
    assert (clash.returncode, clash.stdout.splitlines()[1:]) == (
        1,
        ["  a VM named 'web' already exists: import under another name (--new-name)"],
    )
    assert one_line(run(pyhvd, "vm", "import", str(folder), "--new-id"), 2) == (
        "cannot import 'web': a VM named 'web' already exists: import under another name "
        f"(--new-name); see `pyhv vm compare {folder}`"
    )
    # Registered in place once already: the second import needs a new id as well.
    assert one_line(run(pyhvd, "vm", "import", str(folder), "--new-name", "web-2"), 2) == (
        f"cannot import 'web-2': a VM with id {original} already exists: import with a new id "
        f"(--new-id); see `pyhv vm compare {folder} --new-name web-2`"
    )
    bad = one_line(run(pyhvd, "vm", "import", str(folder), "--new-id", "--new-name", original), 2)
    assert bad == f"VM name '{original}' has the form of a VM id: choose another name"

    fits = run(pyhvd, "vm", "compare", str(folder), "--new-id", "--new-name", "web-2")
    assert (fits.returncode, fits.stdout) == (
        0,
        f"VM 'web-2' ({original}) can be imported (copy-new-id)\n",
    )
    second = run(pyhvd, "vm", "import", str(folder), "--new-id", "--new-name", "web-2")
    assert second.returncode == 0, second.stderr
    new_id = c.get_vm("web-2").config.id
    assert new_id != original and second.stdout == f"imported VM 'web-2' ({new_id}): it is Off\n"
    listed = run(pyhvd, "vm", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted((vm["name"], vm["id"]) for vm in json.loads(listed.stdout)) == [
        ("web", original),
        ("web-2", new_id),
    ]
    assert json.loads((folder / "vm.json").read_text())["name"] == "web"
