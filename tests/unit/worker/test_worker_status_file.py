from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pyhv.model import VmState, VmStatus
from pyhv.paths import HomePaths
from pyhv.worker.status_file import (
    current_status,
    resolve_status,
    worker_alive,
    write_status,
)

T = datetime(2026, 1, 1, tzinfo=UTC)


def now() -> datetime:
    return T


def test_no_file_is_off_or_saved() -> None:
    assert resolve_status(None, has_saved_state=False, alive=False, now=now).state == VmState.OFF
    assert resolve_status(None, has_saved_state=True, alive=False, now=now).state == VmState.SAVED


def test_live_state_of_dead_worker_is_off_critical() -> None:
    running = VmStatus(state=VmState.RUNNING, worker_pid=1234)
    got = resolve_status(running, has_saved_state=False, alive=False, now=now)
    assert (got.state, got.critical, got.reason) == (VmState.OFF, True, "worker died")


def test_live_state_of_live_worker_is_trusted() -> None:
    running = VmStatus(state=VmState.PAUSED, worker_pid=1234)
    assert resolve_status(running, has_saved_state=False, alive=True, now=now) == running


def test_at_rest_state_needs_no_worker() -> None:
    off = VmStatus(state=VmState.OFF, reason="guest shut down")
    assert resolve_status(off, has_saved_state=False, alive=False, now=now) == off


def test_saved_without_file_is_off() -> None:
    saved = VmStatus(state=VmState.SAVED)
    assert resolve_status(saved, has_saved_state=False, alive=False, now=now).state == VmState.OFF


def test_worker_alive_checks_the_command_line() -> None:
    assert not worker_alive(None, "x")
    assert not worker_alive(os.getpid(), "no-such-vm-id-in-pytest-argv")


def test_stale_run_dir_is_removed(paths: HomePaths) -> None:
    vm_id = "5a3c1f4e-0000-4000-8000-000000000001"
    paths.vm_dir(vm_id).mkdir(parents=True)
    write_status(paths.vm_status(vm_id), VmStatus(state=VmState.RUNNING, worker_pid=2**22 + 7))
    run = paths.run_dir(vm_id)
    run.mkdir(parents=True)
    (run / "qmp.sock").touch()
    got = current_status(paths, vm_id)
    assert got.reason == "worker died"
    assert not run.exists()


def test_only_states_at_rest_are_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off and Saved must survive a power loss; a live state means nothing after a reboot (no
    worker lives then), and a start or an apply writes several of them."""
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "status.json"
    for state in (VmState.STARTING, VmState.RUNNING, VmState.PAUSED, VmState.STOPPING):
        write_status(path, VmStatus(state=state))
    assert not synced
    for state in (VmState.OFF, VmState.SAVED):
        write_status(path, VmStatus(state=state))
        assert len(synced) == 2  # the file and its folder
        synced.clear()
    assert json.loads(path.read_bytes())["state"] == VmState.SAVED
