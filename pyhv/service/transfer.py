"""Export-VM, Import-VM and Compare-VM: a VM as a self-contained folder, and back.

An export folder holds ``vm.json`` and ``policy.json`` (disk paths point into the folder),
``disks/`` with every disk and each one's whole differencing chain (links rewritten to the
copies), and ``state/memory.bin`` when the VM was Saved, with ``state/memory.json`` (the run
state it resumes in) when there is one. Everything is written under a
temporary name and renamed into place last, so a failed export leaves no half folder.
These functions do file I/O only; the manager decides when they may run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from pyhv.errors import ConflictError, NotFoundError
from pyhv.model import VmConfig, config_error, parse_vm_config
from pyhv.paths import SAVED_STATE, SAVED_STATE_INFO, HomePaths
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import (
    ID_TAKEN_HINT,
    NAME_TAKEN_HINT,
    CompatibilityReport,
    ImportMode,
)
from pyhv.storage import open_image
from pyhv.storage.operations import check_chain, set_parent

Progress = Callable[[int], None]
CONFIG_NAME = "vm.json"
POLICY_NAME = "policy.json"
COPY_CHUNK = 8 * 1024 * 1024


def disk_chains(config: VmConfig) -> list[list[Path]]:
    """Each attached disk's chain, the disk first and its base last."""
    chains = []
    for _, disk in config.disks():
        with open_image(disk.path, lock=False) as image:
            chains.append([Path(layer.path) for layer in image.chain()])
    return chains


def _copy(src: Path, dst: Path, done: list[int], total: int, progress: Progress) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(COPY_CHUNK):
            fout.write(chunk)
            done[0] += len(chunk)
            progress(int(95 * done[0] / max(total, 1)))
        fout.flush()
        os.fsync(fout.fileno())


def copy_vm_files(
    config: VmConfig, saved_state: Path | None, dest: Path, progress: Progress
) -> VmConfig:
    """Copy the disks (with their chains) and saved state into ``dest``; the returned config
    names the copies. ``dest`` must not exist yet."""
    chains = disk_chains(config)
    files = [p for chain in chains for p in chain]
    if saved_state is not None:
        files.append(saved_state)
    total = sum(p.stat().st_size for p in files)
    done = [0]
    (dest / "disks").mkdir(parents=True)
    copies: dict[Path, Path] = {}
    for i, chain in enumerate(chains):
        for j, layer in enumerate(chain):
            if layer not in copies:
                copies[layer] = dest / "disks" / f"{i}.{j}-{layer.name}"
                _copy(layer, copies[layer], done, total, progress)
        for child, parent in itertools.pairwise(chain):
            set_parent(copies[child], copies[parent])
    if saved_state is not None:
        (dest / SAVED_STATE).parent.mkdir()
        _copy(saved_state, dest / SAVED_STATE, done, total, progress)
    data = config.model_dump()
    for controller in data["scsi_controllers"]:
        for disk in controller["disks"]:
            disk["path"] = copies[Path(disk["path"])]
    return VmConfig.model_validate(data)


def export_vm(
    config: VmConfig,
    policy: ProcessorPolicy,
    paths: HomePaths,
    dest: Path,
    progress: Progress,
) -> None:
    """:raises ConflictError: when ``dest`` exists."""
    if dest.exists():
        raise ConflictError(f"export folder {dest} already exists: choose a new one")
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    saved = paths.vm_saved_state(config.id)
    try:
        copied = copy_vm_files(config, saved if saved.exists() else None, tmp, progress)
        info = paths.vm_saved_state_info(config.id)
        if saved.exists() and info.exists():
            shutil.copyfile(info, tmp / SAVED_STATE_INFO)
        (tmp / CONFIG_NAME).write_text(copied.model_dump_json(indent=2) + "\n")
        (tmp / POLICY_NAME).write_text(policy.model_dump_json(indent=2) + "\n")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_export(folder: Path) -> tuple[VmConfig, ProcessorPolicy]:
    """The exported VM, its disk paths pointing into ``folder`` wherever the folder now is
    (it was written under a temporary name, and may have been moved or copied since).

    :raises NotFoundError: when the folder holds no export.
    :raises ConfigError: when its vm.json or policy.json is not valid.
    """
    config_path = folder / CONFIG_NAME
    try:
        config = parse_vm_config(config_path.read_bytes(), source=str(config_path))
    except FileNotFoundError:
        raise NotFoundError(f"{folder} is not a pyhv export: it has no {CONFIG_NAME}") from None
    # A file given as the folder, a folder as vm.json: the caller's mistake, not pyhvd's.
    except NotADirectoryError:
        raise NotFoundError(f"{folder} is not a pyhv export: it is not a folder") from None
    except IsADirectoryError:
        raise NotFoundError(
            f"{folder} is not a pyhv export: its {CONFIG_NAME} is a folder"
        ) from None
    data = config.model_dump()
    for controller in data["scsi_controllers"]:
        for disk in controller["disks"]:
            disk["path"] = folder / "disks" / Path(disk["path"]).name
    config = VmConfig.model_validate(data)
    policy_path = folder / POLICY_NAME
    try:
        policy = (
            ProcessorPolicy.model_validate_json(policy_path.read_bytes())
            if policy_path.exists()
            else ProcessorPolicy()
        )
    except ValidationError as e:
        raise config_error(e, source=str(policy_path)) from None
    return config, policy


def compare(
    config: VmConfig,
    mode: ImportMode,
    *,
    ids: set[str],
    names: set[str],
    host_memory_mib: int,
    known_switches: set[str],
) -> CompatibilityReport:
    """Compare-VM: every reason the import would fail or the VM would not start here.

    ``config`` is the VM as it would be imported: under its new name, when it gets one.
    """
    problems = []
    if mode != ImportMode.COPY_NEW_ID and config.id in ids:
        problems.append(f"a VM with id {config.id} already exists: {ID_TAKEN_HINT}")
    if config.name in names:
        problems.append(f"a VM named {config.name!r} already exists: {NAME_TAKEN_HINT}")
    for c, disk in config.disks():
        problems += [f"disk {c}:{disk.slot}: {p}" for p in check_chain(disk.path)]
    for n, nic in enumerate(config.network_adapters):
        if nic.switch is not None and nic.switch not in known_switches:
            problems.append(f"network adapter {n}: unknown virtual switch {nic.switch!r}")
    if config.memory_startup_mib > host_memory_mib:
        problems.append(
            f"startup memory {config.memory_startup_mib} MiB exceeds the host's "
            f"{host_memory_mib} MiB"
        )
    return CompatibilityReport(
        vm_id=config.id, name=config.name, compatible=not problems, problems=problems
    )
