"""Who may change a VM now: one short-change lock per VM, a job slot per VM, and one lock for
the inventory as a whole.

A short change (a disk, the DVD, PATCH, delete, submitting a job) holds its VM's lock: it waits
for the VM's other short changes, never for another VM's. A job (power, checkpoint, export) is
submitted while the lock is held and then occupies the VM's job slot until it ends: a change
that finds the slot taken is refused, so no request waits for a long job. The inventory lock
covers what must be unique across VMs (a new VM's name and id); it is taken inside a VM's lock,
never the other way round, and held only for that check and the write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pyhv.errors import ConflictError
from pyhv.service.jobs import Job


class VmGuards:
    def __init__(self) -> None:
        self.inventory = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, int] = {}  # holders and waiters of each VM's lock
        self._jobs: dict[str, Job] = {}

    @contextlib.asynccontextmanager
    async def changing(self, vm_id: str) -> AsyncIterator[None]:
        """Hold the VM's lock; a lock nobody holds or waits for is dropped."""
        lock = self._locks.setdefault(vm_id, asyncio.Lock())
        self._holders[vm_id] = self._holders.get(vm_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._holders[vm_id] -= 1
            if not self._holders[vm_id]:
                del self._holders[vm_id], self._locks[vm_id]

    def check_idle(self, vm_id: str, name: str) -> None:
        """:raises ConflictError: while a job works on the VM."""
        if (busy := self._jobs.get(vm_id)) is not None:
            raise ConflictError(
                f"VM {name!r} is busy with {busy.operation} (job {busy.id}): "
                "wait for it or cancel it"
            )

    def occupy(self, vm_id: str, job: Job) -> None:
        """Give the VM's job slot to ``job``; the caller holds the VM and checked it idle."""
        assert vm_id not in self._jobs, f"VM {vm_id} already runs job {self._jobs[vm_id].id}"
        self._jobs[vm_id] = job

    def vacate(self, vm_id: str, job: Job) -> None:
        """Free the slot ``job`` held (nothing when another job holds it)."""
        if self._jobs.get(vm_id) is job:
            del self._jobs[vm_id]
