"""What creating, applying or removing a checkpoint does to files, tree and config (pure).

A plan lists its steps in journal order: first the new files (undone by deleting them), then
the commit (new tree, new configuration), then merges and deletions of what nobody reads any
more (see :mod:`pyhv.checkpoints.collect`). Nothing here touches a file; the manager runs
the plan and the journal makes it survive a crash.

File names follow Hyper-V: a disk ``data.vhdx`` continues in ``data_<ID>.avhdx`` beside it,
``<ID>`` the checkpoint's id; a ``.vhd`` continues in ``.avhd``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pyhv.checkpoints.collect import collect, detached
from pyhv.checkpoints.steps import (
    ApplyRunning,
    CopyFile,
    CreateDiff,
    Delete,
    MarkSaved,
    Step,
    SwapRunning,
    WriteConfig,
    WriteTree,
)
from pyhv.checkpoints.tree import MAX_NAME_LENGTH, Checkpoint, CheckpointTree, CheckpointType
from pyhv.errors import StateError, UnsupportedFeature
from pyhv.model import VmConfig, VmState
from pyhv.model.status import LIVE_STATES
from pyhv.storage import ImageFormat, format_for_name

_ID_SUFFIX = re.compile(r"_[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$")
_CHILD_EXTENSION = {ImageFormat.VHDX: ".avhdx", ImageFormat.VHD: ".avhd"}
# What a VM's QEMU and worker do not depend on: two configurations that differ only here
# (and in the writable disks' files) run on the same command line.
_NOT_DEVICES = ("name", "notes", "automatic_start_action", "automatic_stop_action")


@dataclass(frozen=True)
class Plan:
    op: str
    steps: list[Step]
    commit: int  # steps[:commit] only create files; steps[commit:] are idempotent
    tree: CheckpointTree
    config: VmConfig


def disk_paths(config: VmConfig) -> dict[str, str]:
    """The writable disks, keyed ``"controller:slot"``; read-only disks never change."""
    return {f"{c}:{d.slot}": str(d.path) for c, d in config.disks() if not d.read_only}


def with_disk_paths(config: VmConfig, paths: dict[str, str]) -> VmConfig:
    data = config.model_dump(mode="json")
    for c, controller in enumerate(data["scsi_controllers"]):
        for disk in controller["disks"]:
            disk["path"] = paths.get(f"{c}:{disk['slot']}", disk["path"])
    return VmConfig.model_validate(data)


def child_path(parent: str, image_id: str) -> str:
    """Where the differencing disk continuing ``parent`` goes: beside it, same format.

    :raises UnsupportedFeature: a raw disk, which has no differencing format.
    """
    p = Path(parent)
    fmt = format_for_name(p)
    if fmt not in _CHILD_EXTENSION:
        raise UnsupportedFeature(
            f"{p}: checkpoints need VHD or VHDX disks; convert it with `pyhv vhd convert`"
        )
    stem = _ID_SUFFIX.sub("", p.stem)
    return str(p.with_name(f"{stem}_{image_id.upper()}{_CHILD_EXTENSION[fmt]}"))


def default_name(tree: CheckpointTree, vm_name: str, now: datetime) -> str:
    """Hyper-V's "VM - (date time)", numbered when taken within the same second. A long VM
    name is cut short so the name stays within :data:`MAX_NAME_LENGTH` (VM names may be as
    long as that themselves): a checkpoint the user did not name must not be refused."""
    when = f" - ({now:%Y-%m-%d %H:%M:%S})"
    taken = {c.name for c in tree.checkpoints}
    n = 1
    while True:
        number = f" ({n})" if n > 1 else ""
        name = vm_name[: MAX_NAME_LENGTH - len(when) - len(number)] + when + number
        if name not in taken:
            return name
        n += 1


@dataclass(frozen=True)
class Moment:
    """What the VM is doing when a checkpoint is taken: its state, where the checkpoint's
    memory would go, and a Saved VM's saved-state file."""

    state: VmState = VmState.OFF
    memory_file: str | None = None
    saved_state: str | None = None
    saved_paused: bool = False  # a Saved VM's saved state resumes Paused


def plan_create(
    tree: CheckpointTree,
    config: VmConfig,
    *,
    checkpoint_id: str,
    name: str,
    kind: CheckpointType,
    now: datetime,
    moment: Moment = Moment(),
) -> Plan:
    """Freeze every writable disk; the VM continues in a new differencing disk on each.

    Of an Off VM: disks only. Of a Saved VM: disks and a copy of the saved state. Of a
    running or paused VM the worker swaps the disks at the instant its memory is saved
    (standard) or while the guest's file systems are frozen (production, disks only).

    :raises StateError: a disk of the VM is another checkpoint's frozen image; a production
        checkpoint of a paused VM (its agent cannot freeze anything).
    """
    disks = disk_paths(config)
    frozen = tree.referenced_images()
    for path in disks.values():
        if path in frozen:
            raise StateError(
                f"{path} is a checkpoint's read-only image but the VM writes to it; "
                "attach a differencing disk on it instead"
            )
    new_paths = {key: child_path(path, checkpoint_id) for key, path in disks.items()}
    pre, memory = _taking(moment, kind, disks, new_paths, config.name)
    saved_paused = moment.state == VmState.SAVED and moment.saved_paused
    paused = moment.state == VmState.PAUSED or saved_paused
    node = Checkpoint(
        id=checkpoint_id,
        name=name,
        parent=tree.current,
        created=now,
        type=kind,
        disks=disks,
        memory_state=memory,
        vm_state=moment.state if memory is not None else VmState.OFF,
        resumes_paused=memory is not None and paused,
        config=config.model_dump(mode="json"),
    )
    new_tree = tree.with_checkpoint(node, {new_paths[k]: disks[k] for k in disks})
    return Plan(
        "create",
        [*pre, WriteTree(), WriteConfig()],
        len(pre),
        new_tree,
        with_disk_paths(config, new_paths),
    )


def _taking(
    moment: Moment,
    kind: CheckpointType,
    disks: dict[str, str],
    new_paths: dict[str, str],
    vm_name: str,
) -> tuple[list[Step], str | None]:
    """The steps that make the new files, and the memory file the checkpoint gets."""
    if moment.state in LIVE_STATES:
        production = kind == CheckpointType.PRODUCTION
        if production and moment.state == VmState.PAUSED:
            raise StateError(
                f"VM '{vm_name}' is Paused: its guest agent cannot freeze file systems; "
                "resume it or take a standard checkpoint"
            )
        memory = None if production else moment.memory_file
        return [SwapRunning(disks=new_paths, memory=memory, freeze=production)], memory
    creates: list[Step] = [CreateDiff(path=new_paths[k], parent=disks[k]) for k in disks]
    if moment.state == VmState.SAVED and moment.saved_state and moment.memory_file:
        creates.append(CopyFile(src=moment.saved_state, dst=moment.memory_file))
        return creates, moment.memory_file
    return creates, None


def applies_live(config: VmConfig, target: Checkpoint) -> bool:
    """Whether ``target`` can be applied to the VM while it runs, by its worker starting a
    new QEMU from the checkpoint's memory: the checkpoint holds a live VM's memory and the
    VM has the devices it had then (only the writable disks' files differ), so the worker's
    storage provider and QEMU command line fit it as they are."""
    if target.memory_state is None or target.vm_state not in LIVE_STATES:
        return False
    return _devices(VmConfig.model_validate(target.config)) == _devices(config)


def _devices(config: VmConfig) -> dict[str, object]:
    data = config.model_dump(mode="json", exclude=set(_NOT_DEVICES))
    for controller in data["scsi_controllers"]:
        for disk in controller["disks"]:
            if not disk["read_only"]:
                disk["path"] = None
    return data


def plan_apply(
    tree: CheckpointTree,
    config: VmConfig,
    target: Checkpoint,
    *,
    image_id: str,
    saved_state: str,
    live: bool = False,
) -> Plan:
    """Go back to ``target``: its configuration (keeping today's VM name), new differencing
    disks on its images, its memory as the VM's saved state when it has one. The current
    disks are dropped unless something else reads them.

    With ``live`` (see :func:`applies_live`; the VM runs) the running VM's worker takes the
    new disks and the memory after the commit instead, and the VM runs on: a crash before
    that step leaves the worker on the old disks, and recovery runs the step again.
    """
    new_paths = {key: child_path(path, image_id) for key, path in target.disks.items()}
    restored = VmConfig.model_validate({**target.config, "name": config.name})
    new_config = with_disk_paths(restored, new_paths)
    images = {**tree.images, **{new_paths[k]: target.disks[k] for k in target.disks}}
    moved = tree.moved_to(target.id).model_copy(update={"images": images})
    pre: list[Step] = [CreateDiff(path=new_paths[k], parent=target.disks[k]) for k in new_paths]
    post: list[Step] = []
    paused = target.resumes_paused
    if live and target.memory_state is not None:
        memory = target.memory_state
        post.append(ApplyRunning(apply_id=image_id, disks=new_paths, memory=memory, paused=paused))
    elif target.memory_state is not None:
        pre.append(CopyFile(src=target.memory_state, dst=saved_state))
        post.append(MarkSaved(paused=paused))
    return _finish("apply", pre, _kept(tree, config), moved, new_config, post)


def plan_remove(
    tree: CheckpointTree, config: VmConfig, target: Checkpoint, *, subtree: bool
) -> Plan:
    """Drop ``target`` (or its subtree); data still read elsewhere is merged, never lost."""
    gone = tree.subtree(target.id) if subtree else [target]
    memory: list[Step] = [Delete(path=c.memory_state) for c in gone if c.memory_state]
    new_tree = tree.without(target.id, subtree)
    return _finish("remove", [], _kept(tree, config), new_tree, config, memory)


def _references(tree: CheckpointTree, config: VmConfig) -> set[str]:
    return tree.referenced_images() | set(disk_paths(config).values())


def _kept(tree: CheckpointTree, config: VmConfig) -> set[str]:
    return detached(tree.images, _references(tree, config))


def _finish(
    op: str,
    pre: list[Step],
    kept: set[str],
    tree: CheckpointTree,
    config: VmConfig,
    after: list[Step],
) -> Plan:
    """Commit the new tree and config, then fold away the images nobody needs; ``kept`` are
    images the operation must not touch although nothing references them."""
    done = collect(tree.images, _references(tree, config) | kept, frozenset(kept))
    final_tree = tree.with_images(done.images, done.moved)
    paths = {k: done.moved.get(p, p) for k, p in disk_paths(config).items()}
    final_config = with_disk_paths(config, paths)
    steps: list[Step] = [*pre, WriteTree(), WriteConfig(), *after, *done.steps]
    return Plan(op, steps, len(pre), final_tree, final_config)
