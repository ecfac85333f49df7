"""Power operations, jobs and events through a real pyhvd and real workers.

The VM has no disk: SeaBIOS finds nothing to boot and idles, which is a real QEMU under a real
worker at the cost of no guest boot. It ignores the ACPI power button, which makes a stop that
runs long enough to be cancelled.
"""

from __future__ import annotations

import threading
import time

import pytest
from pyhvd_harness import Pyhvd, PyhvdFactory

from pyhv.errors import ConflictError, StateError
from pyhv.model import VmConfig
from pyhv.service.events import Event
from pyhv.service.jobs import JobState
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import VmPatch

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def idle_vm(name: str) -> VmConfig:
    return VmConfig(name=name, memory_startup_mib=64, boot_order=[])


def collect(d: Pyhvd, into: list[Event], ready: threading.Event, stop: threading.Event) -> None:
    with d.client().events() as events:
        ready.set()
        for event in events:
            into.append(event)
            if stop.is_set():
                return


def test_power_jobs_and_events(pyhvd: Pyhvd) -> None:
    seen: list[Event] = []
    ready, stop = threading.Event(), threading.Event()
    reader = threading.Thread(target=collect, args=(pyhvd, seen, ready, stop), daemon=True)
    reader.start()
    assert ready.wait(30)

    c = pyhvd.client()
    vm = c.create_vm(idle_vm("p1"), ProcessorPolicy(limit_percent=50, weight=200))
    job = c.start("p1")
    assert job.state == JobState.RUNNING and job.vm_id == vm.config.id
    done = c.wait_job(job.id)
    assert done.state == JobState.COMPLETED and done.progress == 100
    assert c.get_vm("p1").status.state == "Running"
    assert [v.state for v in c.list_vms()] == ["Running"]
    assert c.stats("p1").memory_assigned_mib == 64

    with pytest.raises(StateError, match="cannot start VM 'p1': it is already Running"):
        c.start("p1")
    with pytest.raises(StateError, match="turn it off first"):
        c.update_vm("p1", VmPatch(processor_count=2))
    with pytest.raises(StateError, match="turn it off first"):
        c.remove_vm("p1")

    c.pause("p1", wait=True)
    assert c.get_vm("p1").status.state == "Paused"
    c.resume("p1", wait=True)
    c.restart("p1", wait=True)
    assert c.get_vm("p1").status.state == "Running"
    c.turn_off("p1", wait=True)
    assert c.get_vm("p1").status.state == "Off"

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        e.type == "vm.state" and e.data["state"] == "Off" for e in seen
    ):
        time.sleep(0.1)
    stop.set()
    c.update_vm("p1", VmPatch(notes="wake the reader"))
    reader.join(30)

    types = {e.type for e in seen}
    assert {"vm.created", "vm.state", "job"} <= types
    states = [e.data["state"] for e in seen if e.type == "vm.state"]
    assert "Running" in states and "Paused" in states and states[-1] == "Off"
    start_events = [e.data for e in seen if e.type == "job" and e.data["id"] == job.id]
    assert start_events[0]["state"] == "Running"
    assert start_events[-1]["state"] == "Completed" and start_events[-1]["progress"] == 100
    assert [e.id for e in seen] == sorted(e.id for e in seen)


def test_cancel_a_long_stop(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(idle_vm("p2"))
    c.start("p2", wait=True)
    job = c.stop("p2")  # SeaBIOS ignores the power button: the worker waits for its timeout
    with pytest.raises(ConflictError, match="busy with stop"):
        c.pause("p2")
    time.sleep(0.5)
    c.cancel_job(job.id)
    deadline = time.monotonic() + 30
    while c.job(job.id).state == JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.job(job.id).state == JobState.CANCELLED
    with pytest.raises(StateError, match="only running jobs cancel"):
        c.cancel_job(job.id)
    c.turn_off("p2", wait=True)
    assert c.get_vm("p2").status.state == "Off"


def test_restart_pyhvd_with_kill9_keeps_vms(pyhvd_factory: PyhvdFactory) -> None:
    d = pyhvd_factory()
    d.start()
    c = d.client()
    c.create_vm(idle_vm("keep-running"))
    for i in range(5):
        c.create_vm(VmConfig(name=f"off-{i}", memory_startup_mib=64))
    c.start("keep-running", wait=True)
    before = {v.id: (v.name, v.state) for v in c.list_vms()}

    d.kill9()
    d.start()
    c = d.client()
    after = {v.id: (v.name, v.state) for v in c.list_vms()}
    assert after == before
    assert c.get_vm("keep-running").status.state == "Running"
    assert c.stats("keep-running").uptime_s > 0
    c.pause("keep-running", wait=True)
    c.resume("keep-running", wait=True)
    c.turn_off("keep-running", wait=True)
    assert c.get_vm("keep-running").status.state == "Off"


def test_stop_all_vms_applies_each_automatic_stop_action(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(idle_vm("s1").model_copy(update={"automatic_stop_action": "turn_off"}))
    c.create_vm(idle_vm("s2").model_copy(update={"automatic_stop_action": "shutdown"}))
    c.create_vm(idle_vm("s3"))  # stays Off
    c.start("s1", wait=True)
    c.start("s2", wait=True)
    c.pause("s2", wait=True)  # a paused guest cannot answer the button: turned off instead
    job = c.stop_all_vms(wait=True)
    assert job.state == JobState.COMPLETED
    assert {v.name: v.state for v in c.list_vms()} == {"s1": "Off", "s2": "Off", "s3": "Off"}
