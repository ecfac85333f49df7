from __future__ import annotations

from pathlib import Path

from pyhv.cli.vm_render import format_uptime
from pyhv.host.accel import AccelChoice
from pyhv.paths import HomePaths
from pyhv.worker.launcher import failure_message, worker_args


def test_failure_message_uses_the_workers_own_line() -> None:
    line = "pyhv-worker: error: SeaBIOS (bios-256k.bin) not found: install the seabios package"
    assert (
        failure_message(line, 1) == "SeaBIOS (bios-256k.bin) not found: install the seabios package"
    )
    assert failure_message("Traceback", 1) == "the VM's worker exited with code 1: Traceback"


def test_worker_args() -> None:
    args = worker_args(HomePaths(Path("/h")), "id1", restore=True)
    assert args == ["id1", "--home", "/h", "--restore"]
    accel = AccelChoice(name="tcg", reason="no vmx")
    args = worker_args(HomePaths(Path("/h")), "id1", restore=False, accel=accel)
    assert args[-4:] == ["--accel", "tcg", "--accel-reason", "no vmx"]


def test_format_uptime() -> None:
    assert format_uptime(3723.9) == "01:02:03"
    assert format_uptime(90061) == "1d 01:01:01"
