"""Checkpoints through a real pyhvd, of an Off VM with a VHDX disk (no guest boots): the
client as an operator over TCP, a reader refused, and ``pyhv checkpoint …`` as a user runs it.
Every image file is checked after the operations; nothing is left over."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyhvd_harness import Pyhvd, PyhvdFactory, make_home

from pyhv.checkpoints import CheckpointManager
from pyhv.client import PyhvClient
from pyhv.errors import ApiError, ConflictError, NotFoundError, PermissionDenied
from pyhv.model import DiskAttachment, ScsiController, VmState, make_vm_config
from pyhv.paths import HomePaths
from pyhv.service.schemas import ImportMode
from pyhv.storage import CreateSpec, create_image, open_image
from pyhv.storage.operations import check_chain

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1 << 20
VM = "cpvm"
TOKENS = {"operator": "o" * 32, "reader": "r" * 32}
PYHV = str(Path(sys.executable).with_name("pyhv"))


@pytest.fixture
def vm_pyhvd(pyhvd_factory: PyhvdFactory) -> Pyhvd:
    """pyhvd on a unix socket (admin) and TCP (operator and reader tokens), with an Off VM."""
    d = pyhvd_factory(tcp=True)
    entries = [{"name": f"{role}-user", "role": role, "token": t} for role, t in TOKENS.items()]
    (d.home / "tokens.json").write_text(json.dumps({"tokens": entries}))
    d.start()
    disk = d.home / "disks" / "sys.vhdx"
    create_image(disk, CreateSpec(size=32 * MiB))
    disks = [DiskAttachment(slot=0, path=disk)]
    controllers = [ScsiController(disks=disks)]
    # Started only to see recovery happen first: no boot device, the firmware just waits.
    config = make_vm_config(
        name=VM, memory_startup_mib=64, boot_order=[], scsi_controllers=controllers
    )
    d.client().create_vm(config)
    return d


def top(c: PyhvClient) -> Path:
    """The image the VM's disk is now."""
    return c.get_vm(VM).config.scsi_controllers[0].disks[0].path


def write(c: PyhvClient, tag: str) -> None:
    """What a guest writing ``tag`` does to the disk while the VM is Off."""
    with open_image(top(c), writable=True) as disk:
        disk.write((sum(tag.encode()) * 3) % 24 * MiB, (tag * 4096).encode()[: 3 * MiB // 2])


def state(c: PyhvClient) -> str:
    with open_image(top(c)) as disk:
        return hashlib.sha256(disk.read(0, disk.size)).hexdigest()


def images(d: Pyhvd) -> set[str]:
    """Every disk file in the storage root, each checked to be sound."""
    found = {p.name for p in (d.home / "disks").iterdir() if p.is_file()}
    for name in found:
        assert check_chain(d.home / "disks" / name) == [], name
    return found


def test_checkpoints_through_the_client(vm_pyhvd: Pyhvd) -> None:
    admin = vm_pyhvd.client()
    op = vm_pyhvd.tcp_client(TOKENS["operator"])
    reader = vm_pyhvd.tcp_client(TOKENS["reader"])
    write(op, "A")
    at_c1 = state(op)
    assert op.create_checkpoint(VM, "c1", wait=True).checkpoint == "c1"
    write(op, "B")
    op.create_checkpoint(VM, "c2", wait=True)
    unnamed = op.create_checkpoint(VM, wait=True)
    assert unnamed.checkpoint.startswith(f"{VM} - (") and unnamed.state == "Completed"
    with pytest.raises(ConflictError, match="'c1' exists"):
        op.create_checkpoint(VM, "c1", wait=True)

    tree = reader.checkpoints(VM)
    c1, c2, c3 = tree.checkpoints
    assert (c1.name, c2.name, c3.name) == ("c1", "c2", unnamed.checkpoint)
    assert (c1.parent, c2.parent, c3.parent, tree.current) == (None, c1.id, c2.id, c3.id)
    assert tree.images == {}  # the image map stays inside pyhvd
    assert reader.checkpoint(VM, "c2").id == c2.id
    with pytest.raises(PermissionDenied, match="role reader"):
        reader.create_checkpoint(VM, "nope")
    with pytest.raises(PermissionDenied):
        reader.apply_checkpoint(VM, "c1")
    with pytest.raises(PermissionDenied):
        reader.rename_checkpoint(VM, "c1", "x")
    with pytest.raises(PermissionDenied):
        reader.remove_checkpoint(VM, "c1")

    op.apply_checkpoint(VM, "c1", wait=True)
    assert state(op) == at_c1
    assert op.checkpoints(VM).current == c1.id
    assert top(op).name.startswith("sys_") and top(op).suffix == ".avhdx"

    assert op.rename_checkpoint(VM, "c1", "base").name == "base"
    with pytest.raises(NotFoundError, match="its checkpoints: 'base', 'c2'"):
        op.checkpoint(VM, "c1")

    with pytest.raises(PermissionDenied):  # export writes into the storage roots: admin
        op.export_checkpoint(VM, "base", vm_pyhvd.home / "disks" / "out")
    with pytest.raises(PermissionDenied, match="outside the storage roots"):
        admin.export_checkpoint(VM, "base", vm_pyhvd.home / "out")
    out = vm_pyhvd.home / "disks" / "out"
    admin.export_checkpoint(VM, "base", out, wait=True)
    exported = json.loads((out / "checkpoint.json").read_text())
    assert exported["name"] == "base"
    assert all(check_chain(p) == [] for p in (out / "disks").iterdir())

    job = op.remove_checkpoint(VM, "c2", wait=True)
    assert (job.operation, job.state) == ("checkpoint-remove", "Completed")
    tree = op.checkpoints(VM)
    assert [(c.name, c.parent) for c in tree.checkpoints] == [
        ("base", None),
        (unnamed.checkpoint, c1.id),
    ]
    images(vm_pyhvd)
    op.remove_checkpoint(VM, "base", subtree=True, wait=True)
    assert op.checkpoints(VM).checkpoints == ()
    assert images(vm_pyhvd) == {"sys.vhdx"}
    assert top(op).name == "sys.vhdx" and state(op) == at_c1


def test_a_paused_checkpoint_applies_and_imports_paused(vm_pyhvd: Pyhvd) -> None:
    """The firmware waits for a boot device: memory enough to save and to load."""
    c = vm_pyhvd.client()
    c.start(VM, wait=True)
    c.pause(VM, wait=True)
    c.create_checkpoint(VM, "paused", wait=True)
    c.resume(VM, wait=True)
    c.create_checkpoint(VM, "running", wait=True)
    worker = c.get_vm(VM).status.worker_pid
    c.apply_checkpoint(VM, "paused", wait=True)
    status = c.get_vm(VM).status
    assert status.state == VmState.PAUSED
    assert status.worker_pid == worker  # applied inside the running worker
    c.apply_checkpoint(VM, "running", wait=True)
    assert c.get_vm(VM).status.state == VmState.RUNNING

    out = vm_pyhvd.home / "disks" / "paused-export"
    c.export_checkpoint(VM, "paused", out, wait=True)
    assert json.loads((out / "state" / "memory.json").read_text()) == {"state": "Paused"}
    c.turn_off(VM, wait=True)
    c.remove_vm(VM)
    assert c.compare_vm(out, ImportMode.COPY_NEW_ID).compatible
    c.import_vm(out, ImportMode.COPY_NEW_ID, wait=True)
    assert c.get_vm(VM).status.state == VmState.SAVED
    c.start(VM, wait=True)
    assert c.get_vm(VM).status.state == VmState.PAUSED
    c.turn_off(VM, wait=True)


def test_a_generation2_vm_applies_in_its_worker(vm_pyhvd: Pyhvd) -> None:
    """The old QEMU holds the EFI variable store's lock: it goes before the new one starts."""
    c = vm_pyhvd.client()
    disk = vm_pyhvd.home / "disks" / "uefi.vhdx"
    create_image(disk, CreateSpec(size=32 * MiB))
    controllers = [ScsiController(disks=[DiskAttachment(slot=0, path=disk)])]
    config = make_vm_config(
        name="uefi",
        generation=2,
        memory_startup_mib=64,
        boot_order=[],
        scsi_controllers=controllers,
    )
    c.create_vm(config)
    c.start("uefi", wait=True)
    c.create_checkpoint("uefi", "c1", wait=True)
    worker = c.get_vm("uefi").status.worker_pid
    c.apply_checkpoint("uefi", "c1", wait=True)
    status = c.get_vm("uefi").status
    assert (status.state, status.worker_pid) == (VmState.RUNNING, worker)
    c.turn_off("uefi", wait=True)


def test_a_checkpoint_job_holds_the_vm_and_runs_to_its_end(vm_pyhvd: Pyhvd) -> None:
    """While the job waits for the checkpoint lock (held here), nothing else may change the VM;
    cancelling it does not cut the operation off: it completes once the lock is free."""
    op = vm_pyhvd.tcp_client(TOKENS["operator"])
    with CheckpointManager(HomePaths(vm_pyhvd.home)).held(VM):
        job = op.create_checkpoint(VM, "c1")
        with pytest.raises(ConflictError, match=f"busy with checkpoint \\(job {job.id}\\)"):
            op.start(VM)
        with pytest.raises(ConflictError, match="busy with checkpoint"):
            op.create_checkpoint(VM, "c2")
        with pytest.raises(ConflictError, match="busy with checkpoint"):
            op.rename_checkpoint(VM, "c1", "x")
        op.cancel_job(job.id)
        assert op.job(job.id).state == "Running"
    assert op.wait_job(job.id).state == "Completed"
    assert [c.name for c in op.checkpoints(VM).checkpoints] == ["c1"]


def test_a_start_first_finishes_a_checkpoint_pyhvd_died_in(vm_pyhvd: Pyhvd) -> None:
    vm_pyhvd.stop()
    vm_pyhvd.env["PYHV_FAILPOINT"] = "checkpoint.create.after_step_1"
    vm_pyhvd.start()
    c = vm_pyhvd.client()
    vm_id = c.get_vm(VM).config.id
    with pytest.raises(ApiError):  # pyhvd exits in the middle, like kill -9
        c.create_checkpoint(VM, "c1", wait=True)
    journal = HomePaths(vm_pyhvd.home).vm_checkpoints_dir(vm_id) / "journal.json"
    assert journal.exists()

    del vm_pyhvd.env["PYHV_FAILPOINT"]
    vm_pyhvd.start()
    c = vm_pyhvd.client()
    c.start(VM, wait=True)
    assert not journal.exists()
    c.turn_off(VM, wait=True)
    names = [n.name for n in c.checkpoints(VM).checkpoints]
    assert names in ([], ["c1"])
    assert images(vm_pyhvd) == {"sys.vhdx", top(c).name}


def run(d: Pyhvd, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**d.env, "COLUMNS": "200"}
    return subprocess.run(
        [PYHV, "checkpoint", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_checkpoint_cli(vm_pyhvd: Pyhvd) -> None:
    c = vm_pyhvd.client()
    write(c, "A")
    assert run(vm_pyhvd, "new", VM, "--name", "c1").returncode == 0
    at_c1 = state(c)
    write(c, "B")
    created = run(vm_pyhvd, "new", VM, "--type", "production")
    assert created.returncode == 0 and f"checkpoint '{VM} - (" in created.stdout
    listed = run(vm_pyhvd, "list", VM).stdout.splitlines()
    assert listed[0] == "c1" and listed[1].startswith(f"└── {VM} - (")
    assert listed[2] == "    └── Now"

    shown = run(vm_pyhvd, "show", VM, "c1").stdout
    assert "standard" in shown and "sys.vhdx" in shown

    refused = run(vm_pyhvd, "apply", VM, "c1")
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith("pass --yes or --checkpoint-first")
    assert len(refused.stderr.strip().splitlines()) == 1

    applied = run(vm_pyhvd, "apply", VM, "c1", "--checkpoint-first")
    assert applied.returncode == 0, applied.stderr
    assert "checkpointed the current state as" in applied.stdout
    assert state(c) == at_c1
    assert len(c.checkpoints(VM).checkpoints) == 3

    assert run(vm_pyhvd, "rename", VM, "c1", "base").returncode == 0
    missing = run(vm_pyhvd, "show", VM, "c1")
    assert missing.returncode == 2 and "its checkpoints: 'base'" in missing.stderr
    out = vm_pyhvd.home / "disks" / "out"
    assert run(vm_pyhvd, "export", VM, "base", str(out)).returncode == 0
    assert (out / "checkpoint.json").exists()

    removed = run(vm_pyhvd, "remove", VM, "base", "--subtree")
    assert removed.returncode == 0 and removed.stdout.startswith("removed checkpoints 'base', ")
    assert run(vm_pyhvd, "list", VM).stdout.strip() == f"VM '{VM}' has no checkpoints"
    assert images(vm_pyhvd) == {"sys.vhdx"}


def test_checkpoint_cli_without_pyhvd() -> None:
    home = make_home()
    try:
        env = dict(os.environ, PYHV_HOME=str(home))
        env.pop("PYHV_RUN_DIR", None)
        result = subprocess.run(
            [PYHV, "checkpoint", "list", VM], env=env, capture_output=True, text=True
        )
        assert result.returncode == 1
        assert result.stderr.startswith("pyhv: error: pyhvd is not running (nothing answers at")
        assert len(result.stderr.splitlines()) == 1
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_checkpoint_cli_odd_names(vm_pyhvd: Pyhvd) -> None:
    """Names with a slash work through every command; a name like another checkpoint's id
    is refused; long names and paths stay whole on one line on a narrow terminal."""
    c = vm_pyhvd.client()
    created = run(vm_pyhvd, "new", VM, "--name", "a/b")
    assert created.returncode == 0, created.stderr  # the checkpoint was made, then exit 2
    assert run(vm_pyhvd, "new", VM, "--name", "x/apply").returncode == 0
    a_b = c.checkpoint(VM, "a/b")
    assert run(vm_pyhvd, "show", VM, "a/b").returncode == 0
    assert run(vm_pyhvd, "apply", VM, "a/b", "--yes").returncode == 0
    assert c.checkpoints(VM).current == a_b.id

    clash = run(vm_pyhvd, "rename", VM, "x/apply", a_b.id)
    assert clash.returncode == 2
    refusal = f"a checkpoint with the id '{a_b.id}' exists: choose another name"
    assert clash.stderr == f"pyhv: error: {refusal}\n"

    long = "n" * 100
    assert run(vm_pyhvd, "rename", VM, "x/apply", long).returncode == 0
    narrow = {**vm_pyhvd.env, "COLUMNS": "60"}
    listed = subprocess.run(
        [PYHV, "checkpoint", "list", VM], env=narrow, capture_output=True, text=True
    )
    assert listed.stdout.splitlines() == ["a/b", f"├── {long}", "└── Now"]
    shown = subprocess.run(
        [PYHV, "checkpoint", "show", VM, long], env=narrow, capture_output=True, text=True
    )
    assert f"Disk 0:0      {c.checkpoint(VM, long).disks['0:0']}\n" in shown.stdout

    out = vm_pyhvd.home / "disks" / "out"
    assert run(vm_pyhvd, "export", VM, "a/b", str(out)).returncode == 0
    again = run(vm_pyhvd, "export", VM, "a/b", str(out))
    assert again.returncode == 2 and again.stderr.endswith("export into a new folder\n")
    removed = run(vm_pyhvd, "remove", VM, "a/b", "--subtree")
    assert removed.returncode == 0, removed.stderr
    assert c.checkpoints(VM).checkpoints == ()
    assert images(vm_pyhvd) == {"sys.vhdx"}
