"""The VMs this host knows: one ``vms/<id>/vm.json`` per VM, safe across processes.

Names are unique; creating, renaming and removing hold an exclusive ``flock`` on
``vms/.lock`` so two processes cannot both take a name. Configs are replaced atomically.
Removing a VM deletes its configuration, saved state and logs, never its virtual disks.
Creating or changing a VM checks that it fits this host (processors, memory).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyhv.atomicfile import write_atomic
from pyhv.errors import ConfigError, ConflictError, NotFoundError
from pyhv.host.resources import HostResources
from pyhv.model import VmConfig, check_fits_host, parse_vm_config
from pyhv.paths import HomePaths

log = logging.getLogger(__name__)


class Inventory:
    def __init__(self, paths: HomePaths | None = None, host: HostResources | None = None) -> None:
        self.paths = paths or HomePaths()
        self._host = host

    @property
    def host(self) -> HostResources:
        if self._host is None:
            self._host = HostResources.detect()
        return self._host

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.paths.vms_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.inventory_lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def create(self, config: VmConfig) -> VmConfig:
        """Store a new VM.

        :raises ConfigError: when it asks for more than the host has.
        :raises ConflictError: when the name or the id is taken.
        """
        config = self._checked(config)
        with self._locked():
            self._check_name_free(config)
            vm_dir = self.paths.vm_dir(config.id)
            try:
                vm_dir.mkdir()
            except FileExistsError:
                raise ConflictError(f"a VM with id {config.id} already exists") from None
            self._write(config)
        return config

    def save(self, config: VmConfig) -> VmConfig:
        """Replace an existing VM's configuration (a rename included).

        :raises NotFoundError: when the VM was removed meanwhile.
        :raises ConfigError: when it asks for more than the host has.
        :raises ConflictError: when it was renamed to a name another VM has.
        """
        with self._locked():
            return self._save_locked(config)

    def update(self, name_or_id: str, change: Callable[[VmConfig], None]) -> VmConfig:
        """Read, ``change`` in place, validate and save, all under the inventory lock, so two
        processes editing one VM (two ``disk add``) never lose each other's change.

        :raises NotFoundError, ConfigError, ConflictError: as ``get`` and ``save``; whatever
            ``change`` raises leaves the stored configuration as it was.
        """
        with self._locked():
            config = self.get(name_or_id)
            change(config)
            return self._save_locked(config)

    def _save_locked(self, config: VmConfig) -> VmConfig:
        config = self._checked(config)
        if not self.paths.vm_config(config.id).exists():
            raise NotFoundError(f"VM {config.name!r} ({config.id}) does not exist")
        self._check_name_free(config)
        self._write(config)
        return config

    def get(self, name_or_id: str) -> VmConfig:
        """The VM with this name, or with this id.

        :raises NotFoundError: when there is none.
        """
        by_id = _as_uuid(name_or_id)
        if by_id is not None and self.paths.vm_config(by_id).exists():
            return self._read(self.paths.vm_config(by_id))
        for config in self.list():
            if config.name == name_or_id:
                return config
        raise NotFoundError(f"no VM named {name_or_id!r}: see `pyhv vm list`")

    def list(self) -> list[VmConfig]:
        """Every readable VM, sorted by name; unreadable configs are logged and skipped."""
        configs = []
        for path in self._config_files():
            try:
                configs.append(self._read(path))
            except (ConfigError, OSError) as e:
                log.warning("skipping %s: %s", path, e)
        return sorted(configs, key=lambda c: (c.name, c.id))

    def remove(self, name_or_id: str) -> VmConfig:
        """Forget a VM; its disks stay where they are.

        The folder is renamed away first, so a crash never leaves half a VM behind.
        """
        with self._locked():
            config = self.get(name_or_id)
            vm_dir = self.paths.vm_dir(config.id)
            doomed = vm_dir.with_name(f".{config.id}.removed")
            os.replace(vm_dir, doomed)
            shutil.rmtree(doomed)
            shutil.rmtree(self.paths.vm_log_dir(config.id), ignore_errors=True)
        return config

    def _config_files(self) -> tuple[Path, ...]:
        if not self.paths.vms_dir.is_dir():
            return ()
        return tuple(
            self.paths.vm_config(entry.name)
            for entry in self.paths.vms_dir.iterdir()
            if not entry.name.startswith(".") and self.paths.vm_config(entry.name).is_file()
        )

    def _check_name_free(self, config: VmConfig) -> None:
        for other in self.list():
            if other.name == config.name and other.id != config.id:
                raise ConflictError(
                    f"a VM named {config.name!r} already exists ({other.id}): choose another name"
                )

    def _checked(self, config: VmConfig) -> VmConfig:
        config = _revalidated(config)
        check_fits_host(config, host_cores=self.host.cores, host_memory_mib=self.host.memory_mib)
        return config

    def _read(self, path: Path) -> VmConfig:
        return parse_vm_config(path.read_bytes(), source=str(path))

    def _write(self, config: VmConfig) -> None:
        data = config.model_dump_json(indent=2).encode() + b"\n"
        write_atomic(self.paths.vm_config(config.id), data)


def _revalidated(config: VmConfig) -> VmConfig:
    """Nested lists can be edited in place without validation; check the whole tree again."""
    return parse_vm_config(config.model_dump_json())


def _as_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None
