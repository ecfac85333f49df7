"""Export-VMCheckpoint: copy a checkpoint's disk chains, configuration and memory state.

The export is importable as it is, by Import-VM (``pyhv vm import``): the folder has the
layout of a VM export (:mod:`pyhv.service.transfer`). Every differencing copy is re-pointed
at the copy of its parent, and ``vm.json`` names the copies. A checkpoint with memory is a
Saved VM there: its memory is the saved state, and ``state/memory.json`` beside it says
whether it resumes Paused or Running, as the checkpoint applied here would.
``checkpoint.json`` is written last, so a folder without it is an export that did not
finish (it is removed when the export fails here).

Layout: ``DIR/disks/*``, ``DIR/vm.json``, ``DIR/state/memory.bin`` and
``DIR/state/memory.json`` (when the checkpoint has memory), ``DIR/checkpoint.json``.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

from pyhv.atomicfile import write_atomic
from pyhv.checkpoints.planner import with_disk_paths
from pyhv.checkpoints.store import check_memory
from pyhv.checkpoints.tree import Checkpoint
from pyhv.errors import ConflictError, UsageError
from pyhv.model import VmConfig
from pyhv.paths import SAVED_STATE, SAVED_STATE_INFO
from pyhv.saved_state_file import write_run_state
from pyhv.storage import open_image
from pyhv.storage.operations import set_parent

DISKS_FOLDER = "disks"  # the names Import-VM reads (pyhv.service.transfer)


def export_checkpoint(node: Checkpoint, folder: Path) -> Path:
    """Write the export into the new folder ``folder``; returns it.

    :raises ConflictError: ``folder`` exists.
    :raises UsageError: its parent folder does not.
    :raises StateError: the checkpoint's memory file is missing.
    """
    folder = check_folder(folder)
    check_memory(node)
    (folder / DISKS_FOLDER).mkdir(parents=True)
    try:
        _export(node, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def check_folder(folder: Path) -> Path:
    """``folder`` made absolute, when an export can go there: pyhvd checks it before it
    accepts the export job, as for Export-VM, and the export again when it starts.

    :raises ConflictError: ``folder`` exists.
    :raises UsageError: its parent folder does not, or is a file.
    """
    folder = folder.absolute()
    if folder.exists():
        raise ConflictError(f"{folder} exists: export into a new folder")
    if not folder.parent.is_dir():
        problem = "is not a folder" if folder.parent.exists() else "does not exist"
        raise UsageError(f"{folder}: {folder.parent} {problem}")
    return folder


def _export(node: Checkpoint, folder: Path) -> None:
    copies: dict[Path, Path] = {}
    tops: dict[str, str] = {}
    for key, image in node.disks.items():
        chain = _chain(Path(image))
        for path in chain:
            if path not in copies:
                copies[path] = _free_name(folder / DISKS_FOLDER, path.name)
                shutil.copyfile(path, copies[path])
        # the base first, so every parent is re-pointed before its child is opened through it
        for child, parent in reversed(list(itertools.pairwise(chain))):
            set_parent(copies[child], copies[parent])
        tops[key] = str(copies[chain[0]])
    config = with_disk_paths(VmConfig.model_validate(node.config), tops)
    write_atomic(folder / "vm.json", config.model_dump_json(indent=2).encode() + b"\n")
    if node.memory_state is not None:
        (folder / SAVED_STATE).parent.mkdir()
        shutil.copyfile(node.memory_state, folder / SAVED_STATE)
        write_run_state(folder / SAVED_STATE_INFO, paused=node.resumes_paused)
    meta = node.model_copy(update={"disks": tops, "config": config.model_dump(mode="json")})
    write_atomic(folder / "checkpoint.json", meta.model_dump_json(indent=2).encode() + b"\n")


def _chain(image: Path) -> list[Path]:
    with open_image(image) as top:
        return [layer.path.absolute() for layer in top.chain()]


def _free_name(folder: Path, name: str) -> Path:
    """Two disks' chains may hold different files of one name (each disk in its own folder)."""
    candidate, n = folder / name, 2
    while candidate.exists():
        candidate, n = folder / f"{Path(name).stem}-{n}{Path(name).suffix}", n + 1
    return candidate
