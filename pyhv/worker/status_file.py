"""``status.json``: written by the VM's worker, read by everyone else.

With no worker running, the file may lie (the worker was killed before it could write "Off"),
so readers go through :func:`resolve_status`, which trusts a live state only while the worker
that wrote it is alive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from pyhv.atomicfile import write_atomic
from pyhv.model import VmState, VmStatus
from pyhv.paths import HomePaths

_AT_REST = (VmState.OFF, VmState.SAVED)


def write_status(path: Path, status: VmStatus) -> None:
    """Only Off and Saved must survive a power loss: after a reboot no worker lives, and
    :func:`resolve_status` makes any other record Off or Saved (by the saved state file),
    so a live state's record is not synced (a VM start or checkpoint apply writes several)."""
    data = status.model_dump_json(indent=2).encode() + b"\n"
    write_atomic(path, data, durable=status.state in _AT_REST)


def read_status_file(path: Path) -> VmStatus | None:
    try:
        return VmStatus.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None


def worker_alive(pid: int | None, vm_id: str) -> bool:
    """The pid runs a worker for this VM (a reused pid runs something else)."""
    if pid is None or pid <= 0:
        return False
    # /proc directly, not psutil: the worker reads this at start and imports nothing more for it.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return vm_id in cmdline.replace(b"\0", b" ").decode(errors="replace")


def resolve_status(
    recorded: VmStatus | None,
    *,
    has_saved_state: bool,
    alive: bool,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> VmStatus:
    """What state the VM is really in, given what was recorded and what the host shows."""
    if recorded is None:
        return VmStatus(state=VmState.SAVED if has_saved_state else VmState.OFF, since=now())
    if recorded.state in _AT_REST or alive:
        if recorded.state == VmState.SAVED and not has_saved_state:
            return VmStatus(state=VmState.OFF, reason="saved state file missing", since=now())
        return recorded
    return VmStatus(
        state=VmState.SAVED if has_saved_state else VmState.OFF,
        critical=not has_saved_state,
        reason="worker died",
        since=now(),
    )


def current_status(paths: HomePaths, vm_id: str) -> VmStatus:
    """The VM's real status; a dead worker's leftover sockets are removed on the way."""
    recorded = read_status_file(paths.vm_status(vm_id))
    alive = recorded is not None and worker_alive(recorded.worker_pid, vm_id)
    if not alive:
        _remove_run_dir(paths.run_dir(vm_id))
    return resolve_status(
        recorded, has_saved_state=paths.vm_saved_state(vm_id).exists(), alive=alive
    )


def _remove_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        return
    for entry in run_dir.iterdir():
        with contextlib.suppress(OSError):
            entry.unlink()
    with contextlib.suppress(OSError):
        run_dir.rmdir()
