"""An Off VM with two real disks (a dynamic VHDX and a dynamic VHD) in a private PYHV_HOME,
and a guest's-eye view of them: write a file, hash what the disks show."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyhv.checkpoints import CheckpointManager
from pyhv.inventory import Inventory
from pyhv.model import DiskAttachment, ScsiController, make_vm_config
from pyhv.paths import HomePaths
from pyhv.storage import CreateSpec, create_image, open_image
from pyhv.storage.operations import check_chain

MiB = 1 << 20
VM = "cpvm"


@dataclass
class OffVm:
    home: Path
    disks_dir: Path
    bases: set[str]
    inventory: Inventory
    manager: CheckpointManager

    def disk_paths(self) -> list[Path]:
        return [d.path for _, d in self.inventory.get(VM).disks()]

    def write(self, tag: str) -> None:
        """What a guest writing file ``tag`` does: some blocks of each disk change."""
        for n, path in enumerate(self.disk_paths()):
            with open_image(path, writable=True) as disk:
                offset = (sum(tag.encode()) * 3 + n * 7) % 24 * MiB
                disk.write(offset, (tag * 4096).encode()[: 3 * MiB // 2])

    def state(self) -> str:
        digest = hashlib.sha256()
        for path in self.disk_paths():
            with open_image(path) as disk:
                for off in range(0, disk.size, 8 * MiB):
                    digest.update(disk.read(off, min(8 * MiB, disk.size - off)))
        return digest.hexdigest()

    def files(self) -> set[str]:
        return {str(p) for p in self.disks_dir.iterdir()}

    def check(self) -> None:
        """Every file sound, every file read by someone, nothing left over."""
        _, tree = self.manager.tree(VM)
        needed = set(tree.images) | {str(p) for p in self.disk_paths()}
        assert self.files() == needed, f"orphans: {self.files() - needed}"
        for path in self.files():
            assert check_chain(path) == [], path


@pytest.fixture
def off_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OffVm]:
    home = tmp_path / "home"
    monkeypatch.setenv("PYHV_HOME", str(home))
    disks_dir = tmp_path / "disks"
    disks_dir.mkdir()
    sys_disk, data_disk = disks_dir / "sys.vhdx", disks_dir / "data.vhd"
    create_image(sys_disk, CreateSpec(size=32 * MiB))
    create_image(data_disk, CreateSpec(size=24 * MiB))
    paths = HomePaths(home)
    inventory = Inventory(paths)
    disks = [DiskAttachment(slot=0, path=sys_disk), DiskAttachment(slot=1, path=data_disk)]
    inventory.create(make_vm_config(name=VM, scsi_controllers=[ScsiController(disks=disks)]))
    yield OffVm(
        home,
        disks_dir,
        {str(sys_disk), str(data_disk)},
        inventory,
        CheckpointManager(paths, inventory),
    )
    os.environ.pop("PYHV_FAILPOINT", None)
