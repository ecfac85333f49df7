"""Export-VM, Compare-VM and Import-VM through a real pyhvd, with a differencing chain."""

from __future__ import annotations

import json

import pytest
from pyhvd_harness import Pyhvd

from pyhv.errors import ConfigError, ConflictError, PermissionDenied, StateError
from pyhv.model import VmConfig
from pyhv.paths import HomePaths
from pyhv.service.jobs import JobState
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import ImportMode
from pyhv.storage import open_image
from pyhv.storage.create import create_image
from pyhv.storage.image import CreateSpec
from pyhv.storage.operations import check_chain
from pyhv.units import MiB


def vm_with_chain(d: Pyhvd) -> VmConfig:
    disks = d.home / "disks"
    create_image(disks / "base.vhdx", CreateSpec(size=8 * MiB))
    create_image(disks / "child.avhdx", CreateSpec(size=0, parent=str(disks / "base.vhdx")))
    return VmConfig.model_validate(
        {
            "name": "exp",
            "memory_startup_mib": 64,
            "scsi_controllers": [{"disks": [{"slot": 0, "path": str(disks / "child.avhdx")}]}],
        }
    )


def test_export_compare_import(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    original = c.create_vm(vm_with_chain(pyhvd), ProcessorPolicy(weight=300)).config
    folder = pyhvd.home / "disks" / "exports" / "exp1"
    (folder.parent).mkdir()
    with pytest.raises(PermissionDenied):
        c.export_vm("exp", "/tmp/elsewhere-export")
    job = c.export_vm("exp", folder, wait=True)
    assert (job.state, job.progress) == (JobState.COMPLETED, 100)
    assert (folder / "vm.json").is_file()
    copies = sorted(p.name for p in (folder / "disks").iterdir())
    assert copies == ["0.0-child.avhdx", "0.1-base.vhdx"]
    assert check_chain(folder / "disks" / "0.0-child.avhdx") == []
    with open_image(folder / "disks" / "0.0-child.avhdx", lock=False) as image:
        assert [p.path.parent for p in image.chain()] == [folder / "disks"] * 2
    with pytest.raises(ConflictError, match="already exists"):
        c.export_vm("exp", folder)

    report = c.compare_vm(folder)
    assert not report.compatible
    assert any("already exists" in p for p in report.problems)
    with pytest.raises(ConflictError, match="cannot import 'exp'"):
        c.import_vm(folder)

    c.remove_vm("exp")
    assert c.compare_vm(folder).compatible
    c.import_vm(folder, ImportMode.REGISTER, wait=True)
    registered = c.get_vm("exp")
    assert registered.config.id == original.id and registered.policy.weight == 300
    assert registered.config.scsi_controllers[0].disks[0].path.parent == folder / "disks"

    c.remove_vm("exp")
    c.import_vm(folder, ImportMode.COPY_NEW_ID, wait=True)
    copied = c.get_vm("exp")
    assert copied.config.id != original.id
    disk = copied.config.scsi_controllers[0].disks[0].path
    assert disk.parent == (pyhvd.home / "disks" / "imported" / copied.config.id / "disks").resolve()
    assert check_chain(disk) == []


@pytest.mark.integration
def test_export_needs_the_vm_at_rest(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(VmConfig(name="busy", memory_startup_mib=64, boot_order=[]))
    c.start("busy", wait=True)
    try:
        with pytest.raises(StateError, match="turn it off or save it first"):
            c.export_vm("busy", pyhvd.home / "disks" / "x")
    finally:
        c.turn_off("busy", wait=True)


def test_import_under_a_new_name(pyhvd: Pyhvd) -> None:
    """pyhv's VM names are unique: an export whose name is taken imports under another one."""
    c = pyhvd.client()
    original = c.create_vm(vm_with_chain(pyhvd)).config
    folder = pyhvd.home / "disks" / "exp-named"
    c.export_vm("exp", folder, wait=True)

    taken = c.compare_vm(folder, ImportMode.COPY_NEW_ID)
    assert taken.problems == ["a VM named 'exp' already exists: import under another name"]
    with pytest.raises(ConfigError, match="has the form of a VM id"):
        c.compare_vm(folder, ImportMode.COPY_NEW_ID, new_name=original.id)
    with pytest.raises(ConfigError, match="must not contain '/'"):
        c.import_vm(folder, ImportMode.COPY_NEW_ID, new_name="a/b")

    fits = c.compare_vm(folder, ImportMode.COPY_NEW_ID, new_name="exp-copy")
    assert (fits.name, fits.compatible) == ("exp-copy", True)
    c.import_vm(folder, ImportMode.COPY_NEW_ID, new_name="exp-copy", wait=True)
    copy = c.get_vm("exp-copy").config
    assert copy.id != original.id
    with pytest.raises(ConflictError) as refused:
        c.import_vm(folder, ImportMode.COPY_NEW_ID, new_name="exp-copy")
    assert str(refused.value) == (
        "cannot import 'exp' as 'exp-copy': "
        "a VM named 'exp-copy' already exists: import under another name"
    )

    # Registered in place: the inventory's configuration has the new name, the export's not.
    c.remove_vm("exp")
    c.import_vm(folder, new_name="exp-here", wait=True)
    here = c.get_vm("exp-here").config
    assert here.id == original.id
    assert here.scsi_controllers[0].disks[0].path.parent == folder / "disks"
    stored = HomePaths(pyhvd.home).vm_config(here.id)
    assert json.loads(stored.read_text())["name"] == "exp-here"
    assert json.loads((folder / "vm.json").read_text())["name"] == "exp"
    assert sorted(vm.name for vm in c.list_vms()) == ["exp-copy", "exp-here"]
