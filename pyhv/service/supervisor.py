"""The seam between the manager and the VMs' workers: launch one, call its control ops.

Workers are started detached (their own session), so they outlive pyhvd; reattaching after a
restart needs nothing but their control sockets, which :class:`WorkerSupervisor` opens per call.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

import psutil

from pyhv.model import VmConfig, VmStatus
from pyhv.paths import HomePaths
from pyhv.worker.client import WorkerClient
from pyhv.worker.launcher import start_worker
from pyhv.worker.spawner import Spawner


class Supervisor(Protocol):
    def launch(self, config: VmConfig, *, restore: bool) -> None:
        """Start the VM's worker; returns once it answers on its control socket.

        :raises PyhvError: with the worker's own message when it gave up.
        """

    def call(
        self, config: VmConfig, op: str, timeout_s: float, args: dict[str, Any] | None = None
    ) -> Any:
        """One control op on the VM's worker, waiting at most ``timeout_s`` for its answer.

        :raises StateError: when no worker answers.
        """

    def attach_console(self, config: VmConfig) -> socket.socket:
        """The worker's serial console stream, both ways; the caller closes it.

        :raises StateError: when no worker answers.
        """

    def pids(self, status: VmStatus) -> list[int]:
        """The worker's process and its children (QEMU), for the VM's cgroup."""


class WorkerSupervisor:
    """``spawner`` makes the worker processes: pyhvd passes its warm fork server; without one
    every worker starts afresh."""

    def __init__(self, paths: HomePaths, spawner: Spawner | None = None) -> None:
        self.paths = paths
        self.spawner = spawner

    def launch(self, config: VmConfig, *, restore: bool) -> None:
        start_worker(self.paths, config, restore=restore, spawner=self.spawner)

    def call(
        self, config: VmConfig, op: str, timeout_s: float, args: dict[str, Any] | None = None
    ) -> Any:
        return self._client(config).call(op, args, timeout=timeout_s)

    def attach_console(self, config: VmConfig) -> socket.socket:
        return self._client(config).attach_console()

    def _client(self, config: VmConfig) -> WorkerClient:
        return WorkerClient(self.paths.runtime(config.id).control, config.name)

    def pids(self, status: VmStatus) -> list[int]:
        if status.worker_pid is None:
            return []
        try:
            worker = psutil.Process(status.worker_pid)
            return [worker.pid, *(p.pid for p in worker.children(recursive=True))]
        except psutil.Error:
            return []
