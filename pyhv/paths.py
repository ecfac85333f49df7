"""Where pyhv keeps its state: one place that names every file and socket under ``PYHV_HOME``.

Layout::

    $PYHV_HOME/vms/<id>/vm.json           the VM's configuration (written atomically)
    $PYHV_HOME/vms/<id>/status.json       written by the VM's worker
    $PYHV_HOME/vms/<id>/state/memory.bin  saved memory and device state
    $PYHV_HOME/vms/<id>/state/memory.json the run state it resumes in (pyhv.saved_state_file)
    $PYHV_HOME/vms/<id>/checkpoints/      checkpoint tree, journal, memory states
    $PYHV_HOME/vms/<id>/efi-vars.fd       the generation-2 VM's own UEFI variable store
    $PYHV_HOME/logs/<id>/console.log      serial console log
    $PYHV_HOME/run/<id>/*.sock            sockets of the running VM (``PYHV_RUN_DIR`` moves run/)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pyhv.errors import ConfigError

DEFAULT_HOME = Path("/var/lib/pyhv")

#: A VM's saved state and its run state, relative to the VM's folder. Export folders (of a VM
#: or of a checkpoint) lay them out the same way, so Import-VM finds them where a VM keeps them.
SAVED_STATE = Path("state") / "memory.bin"
SAVED_STATE_INFO = Path("state") / "memory.json"

# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


def pyhv_home() -> Path:
    """The state directory: ``PYHV_HOME`` or ``/var/lib/pyhv``."""
    return Path(os.environ.get("PYHV_HOME") or DEFAULT_HOME)


def check_socket_path(path: Path) -> Path:
    """Refuse a unix socket path the kernel would truncate.

    :raises ConfigError: when the path is longer than 107 bytes.
    """
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"socket path {path} is {size} bytes, over the unix limit of "
            f"{MAX_SOCKET_PATH_BYTES}: use a shorter PYHV_HOME or set PYHV_RUN_DIR"
        )
    return path


@dataclass(frozen=True)
class RuntimeLayout:
    """The sockets and pid file of one running VM, all inside its run directory."""

    run_dir: Path

    @property
    def qmp(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def control(self) -> Path:
        return self.run_dir / "control.sock"

    @property
    def serial(self) -> Path:
        return self.run_dir / "serial.sock"

    @property
    def qga(self) -> Path:
        return self.run_dir / "qga.sock"

    @property
    def nbd(self) -> Path:
        return self.run_dir / "nbd.sock"

    @property
    def worker_pid(self) -> Path:
        return self.run_dir / "worker.pid"

    def sockets(self) -> tuple[Path, ...]:
        return (self.qmp, self.control, self.serial, self.qga, self.nbd)

    def checked(self) -> RuntimeLayout:
        """This layout, after making sure every socket path fits in sun_path.

        :raises ConfigError: naming the first socket path that is too long.
        """
        for sock in self.sockets():
            check_socket_path(sock)
        return self


class HomePaths:
    """Names of every file pyhv keeps, derived from the home directory alone (no I/O)."""

    def __init__(self, home: Path | None = None, run_root: Path | None = None) -> None:
        self.home = Path(home) if home is not None else pyhv_home()
        env_run = os.environ.get("PYHV_RUN_DIR")
        if run_root is not None:
            self.run_root = Path(run_root)
        elif env_run:
            self.run_root = Path(env_run)
        else:
            self.run_root = self.home / "run"

    @property
    def vms_dir(self) -> Path:
        return self.home / "vms"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def inventory_lock(self) -> Path:
        return self.vms_dir / ".lock"

    def vm_dir(self, vm_id: str) -> Path:
        return self.vms_dir / vm_id

    def vm_config(self, vm_id: str) -> Path:
        return self.vm_dir(vm_id) / "vm.json"

    def vm_status(self, vm_id: str) -> Path:
        return self.vm_dir(vm_id) / "status.json"

    def vm_state_dir(self, vm_id: str) -> Path:
        return self.vm_dir(vm_id) / SAVED_STATE.parent

    def vm_saved_state(self, vm_id: str) -> Path:
        return self.vm_dir(vm_id) / SAVED_STATE

    def vm_saved_state_info(self, vm_id: str) -> Path:
        """The run state the saved state comes back in (:mod:`pyhv.saved_state_file`)."""
        return self.vm_dir(vm_id) / SAVED_STATE_INFO

    def vm_checkpoints_dir(self, vm_id: str) -> Path:
        return self.vm_dir(vm_id) / "checkpoints"

    def vm_efi_vars(self, vm_id: str) -> Path:
        return self.vm_dir(vm_id) / "efi-vars.fd"

    def vm_log_dir(self, vm_id: str) -> Path:
        return self.logs_dir / vm_id

    def vm_console_log(self, vm_id: str) -> Path:
        return self.vm_log_dir(vm_id) / "console.log"

    def run_dir(self, vm_id: str) -> Path:
        return self.run_root / vm_id

    def runtime(self, vm_id: str) -> RuntimeLayout:
        """The VM's socket layout, checked against the unix socket path limit.

        :raises ConfigError: when a socket path would be too long.
        """
        return RuntimeLayout(self.run_dir(vm_id)).checked()
