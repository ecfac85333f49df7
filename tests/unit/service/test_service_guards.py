"""VmGuards: changes of one VM wait for each other, never for another VM's; a job refuses them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from pyhv.errors import ConflictError
from pyhv.service.guards import VmGuards
from pyhv.service.jobs import Job

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _job(operation: str) -> Job:
    return Job(id=f"{operation}-1", operation=operation, created=datetime.now(UTC))


async def _hold_until(guards: VmGuards, vm_id: str, release: asyncio.Event) -> None:
    async with guards.changing(vm_id):
        await release.wait()


async def test_one_vm_s_changes_wait_for_each_other() -> None:
    guards, release = VmGuards(), asyncio.Event()
    first = asyncio.create_task(_hold_until(guards, "a", release))
    await asyncio.sleep(0)
    order: list[str] = []

    async def second() -> None:
        async with guards.changing("a"):
            order.append("second")

    waiting = asyncio.create_task(second())
    await asyncio.sleep(0.01)
    assert order == []
    order.append("first done")
    release.set()
    await asyncio.gather(first, waiting)
    assert order == ["first done", "second"]


async def test_other_vms_and_the_inventory_do_not_wait() -> None:
    guards, release = VmGuards(), asyncio.Event()
    held = asyncio.create_task(_hold_until(guards, "a", release))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        async with guards.changing("b"):
            pass
        async with guards.inventory:
            pass
    release.set()
    await held


async def test_locks_nobody_uses_are_dropped() -> None:
    guards = VmGuards()
    async with guards.changing("a"):
        pass
    with pytest.raises(RuntimeError):
        async with guards.changing("b"):
            raise RuntimeError("a failed change")
    assert guards._locks == {} and guards._holders == {}


async def test_a_job_makes_the_vm_busy_until_it_vacates() -> None:
    guards, job = VmGuards(), _job("export")
    guards.occupy("a", job)
    with pytest.raises(ConflictError, match=r"VM 'x' is busy with export \(job export-1\)"):
        guards.check_idle("a", "x")
    guards.check_idle("b", "y")
    guards.vacate("a", _job("start"))  # not the job that holds it: nothing changes
    with pytest.raises(ConflictError):
        guards.check_idle("a", "x")
    guards.vacate("a", job)
    guards.check_idle("a", "x")
