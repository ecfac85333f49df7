"""pyhvd's in-memory view of the inventory and of each VM's status, so reads never touch disk.

pyhvd's own changes update the view directly. Changes made by others (a worker writing
``status.json``, a CLI editing ``vm.json``) are found by :func:`scan`, which compares file
stamps (mtime, size) and re-reads only what changed; it runs off the event loop.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from pyhv.atomicfile import write_atomic
from pyhv.errors import ConfigError, NotFoundError
from pyhv.model import VmConfig, VmState, VmStatus, parse_vm_config
from pyhv.paths import HomePaths
from pyhv.saved_state_file import write_run_state
from pyhv.service.policies import ProcessorPolicy
from pyhv.worker.status_file import (
    current_status,
    read_status_file,
    worker_alive,
    write_status,
)

log = logging.getLogger(__name__)

Stamp = tuple[int, int]
_ALIVE = {VmState.STARTING, VmState.RUNNING, VmState.PAUSED, VmState.SAVING, VmState.STOPPING}


@dataclass(frozen=True)
class Seen:
    """The file stamps an entry was read from; ``alive`` asks the next scan to check the worker."""

    config: Stamp | None = None
    status: Stamp | None = None
    alive: bool = False


@dataclass
class VmEntry:
    config: VmConfig
    status: VmStatus
    policy: ProcessorPolicy
    seen: Seen = field(default_factory=Seen)
    view_json: bytes | None = field(default=None, repr=False)  # GET /vms/{id}, until a change


@dataclass
class ScanResult:
    """What changed on disk since the stamps the scan started from."""

    configs: dict[str, tuple[VmConfig, ProcessorPolicy, Stamp]] = field(default_factory=dict)
    statuses: dict[str, tuple[VmStatus, Stamp | None]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)


def _stamp(path: str | Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


def read_policy(paths: HomePaths, vm_id: str) -> ProcessorPolicy:
    try:
        return ProcessorPolicy.model_validate_json(policy_path(paths, vm_id).read_bytes())
    except FileNotFoundError:
        return ProcessorPolicy()
    except ValueError as err:
        raise ConfigError(f"{policy_path(paths, vm_id)}: invalid processor policy") from err


def write_policy(paths: HomePaths, vm_id: str, policy: ProcessorPolicy) -> None:
    write_atomic(policy_path(paths, vm_id), policy.model_dump_json().encode())


def policy_path(paths: HomePaths, vm_id: str) -> Path:
    """Resource controls live beside vm.json, so removing the VM removes them."""
    return paths.vm_dir(vm_id) / "policy.json"


def discard_saved_state(paths: HomePaths, vm_id: str) -> None:
    """Turning off a Saved VM drops its memory image; no worker runs to do it, so pyhvd does."""
    paths.vm_saved_state(vm_id).unlink(missing_ok=True)
    paths.vm_saved_state_info(vm_id).unlink(missing_ok=True)
    write_status(
        paths.vm_status(vm_id), VmStatus(state=VmState.OFF, reason="saved state discarded")
    )


def adopt_saved_state(
    paths: HomePaths, vm_id: str, memory: Path, *, paused: bool, keep_source: bool
) -> None:
    """Import-VM hands a VM a saved state while no worker runs for it, so pyhvd does what
    :func:`discard_saved_state` undoes: the run state first (a saved state never lacks it), then
    the memory (copied when ``keep_source``: a registered export keeps its files; else moved),
    then a new status file, Saved, since the next scan re-reads only status files that changed
    and a VM created a moment ago has had none."""
    target = paths.vm_saved_state(vm_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_run_state(paths.vm_saved_state_info(vm_id), paused=paused)
    if keep_source:
        shutil.copyfile(memory, target)
    else:
        memory.replace(target)
    write_status(
        paths.vm_status(vm_id),
        VmStatus(state=VmState.SAVED, reason="imported with its saved state"),
    )


def interrupted_vms(paths: HomePaths) -> set[str]:
    """VMs whose status file says they ran while their worker is gone (the host went down)."""
    found = set()
    if paths.vms_dir.is_dir():
        for vm_dir in paths.vms_dir.iterdir():
            recorded = read_status_file(paths.vm_status(vm_dir.name))
            if (
                recorded is not None
                and recorded.state in _ALIVE
                and not worker_alive(recorded.worker_pid, vm_dir.name)
            ):
                found.add(vm_dir.name)
    return found


def scan(paths: HomePaths, seen: dict[str, Seen]) -> ScanResult:
    """Re-read every vm.json and status.json whose stamp differs from ``seen``."""
    result = ScanResult()
    on_disk: dict[str, str] = {}
    if paths.vms_dir.is_dir():
        on_disk = {e.name: e.path for e in os.scandir(paths.vms_dir) if not e.name.startswith(".")}
    # pyhvd scans every second: joining Path objects would cost more than the stats themselves.
    config_name, status_name = paths.vm_config("-").name, paths.vm_status("-").name
    for vm_id, vm_dir in on_disk.items():
        before = seen.get(vm_id)
        config_stamp = _stamp(os.path.join(vm_dir, config_name))
        if config_stamp is None:
            continue
        if before is None or config_stamp != before.config:
            try:
                config = parse_vm_config(paths.vm_config(vm_id).read_bytes())
                policy = read_policy(paths, vm_id)
            except (ConfigError, OSError) as err:
                log.warning("skipping VM %s: %s", vm_id, err)
                continue
            result.configs[vm_id] = (config, policy, config_stamp)
        status_stamp = _stamp(os.path.join(vm_dir, status_name))
        if before is None or before.alive or status_stamp != before.status:
            result.statuses[vm_id] = (current_status(paths, vm_id), status_stamp)
    result.gone = set(seen) - on_disk.keys()
    return result


class VmRegistry:
    def __init__(self, paths: HomePaths) -> None:
        self.paths = paths
        self._entries: dict[str, VmEntry] = {}
        self._by_name: dict[str, str] = {}
        self.version = 0

    def get(self, name_or_id: str) -> VmEntry:
        """:raises NotFoundError: when no VM has this id or name."""
        vm_id = name_or_id if name_or_id in self._entries else self._by_name.get(name_or_id)
        if vm_id is None:
            raise NotFoundError(f"no VM named {name_or_id!r}: see GET /vms or `pyhv vm list`")
        return self._entries[vm_id]

    def has(self, vm_id: str) -> bool:
        return vm_id in self._entries

    def entries(self) -> list[VmEntry]:
        return sorted(self._entries.values(), key=lambda e: (e.config.name, e.config.id))

    def name_taken(self, name: str, by_other_than: str | None = None) -> VmEntry | None:
        vm_id = self._by_name.get(name)
        return self._entries[vm_id] if vm_id is not None and vm_id != by_other_than else None

    def seen(self) -> dict[str, Seen]:
        return {vm_id: e.seen for vm_id, e in self._entries.items()}

    def put(
        self, config: VmConfig, policy: ProcessorPolicy | None = None, stamp: Stamp | None = None
    ) -> VmEntry:
        old = self._entries.get(config.id)
        if old is not None and self._by_name.get(old.config.name) == config.id:
            del self._by_name[old.config.name]
        entry = old or VmEntry(config, VmStatus(), policy or ProcessorPolicy())
        entry.config = config
        entry.view_json = None
        if policy is not None:
            entry.policy = policy
        entry.seen = replace(entry.seen, config=stamp or _stamp(self.paths.vm_config(config.id)))
        self._entries[config.id] = entry
        self._by_name[config.name] = config.id
        self.version += 1
        return entry

    def set_status(self, vm_id: str, status: VmStatus, stamp: Stamp | None = None) -> bool:
        """Record a status; True when the state visible to users changed."""
        entry = self._entries[vm_id]
        entry.seen = replace(entry.seen, status=stamp, alive=status.state in _ALIVE)
        before = (entry.status.state, entry.status.critical, entry.status.reason)
        entry.status = status
        entry.view_json = None
        changed = before != (status.state, status.critical, status.reason)
        self.version += changed
        return changed

    def drop(self, vm_id: str) -> VmEntry | None:
        entry = self._entries.pop(vm_id, None)
        if entry is not None:
            if self._by_name.get(entry.config.name) == vm_id:
                del self._by_name[entry.config.name]
            self.version += 1
        return entry
