"""A worker whose PYHV_HOME is removed while it starts gives up with an error and kills its
QEMU, instead of waiting out the monitor's timeout for a socket that can never appear."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_worker_lifecycle import FakeProcess, make_config

from pyhv.errors import QmpError
from pyhv.paths import HomePaths
from pyhv.worker.qmp import QmpSession
from pyhv.worker.worker import Worker, WorkerEnv


class HomeRemovingRunner:
    """Spawns a fake QEMU; PYHV_HOME vanishes just after, while the worker waits for the
    monitor (QEMU has its sockets by then, and would run on)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.proc: FakeProcess | None = None

    async def spawn(self, argv: Sequence[str], log_path: Path) -> FakeProcess:
        asyncio.get_running_loop().call_soon(shutil.rmtree, self.home)
        self.proc = FakeProcess()
        return self.proc


def test_monitor_in_a_vanished_folder_fails_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(QmpError, match="vanished"):
        asyncio.run(QmpSession.connect(str(run_dir / "qmp.sock"), "vm", timeout=60))


def test_worker_fails_and_kills_qemu_when_its_home_vanishes(paths: HomePaths) -> None:
    config = make_config(paths)
    runner = HomeRemovingRunner(paths.home)
    worker = Worker(config, paths, "tcg", WorkerEnv(runner=runner))

    async def go() -> None:
        with pytest.raises(QmpError, match="vanished"):
            await asyncio.wait_for(worker.run(restore=False), 20)
        assert runner.proc is not None
        assert (await runner.proc.wait()).returncode == -9

    asyncio.run(go())
