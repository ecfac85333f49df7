"""Fakes for the worker's I/O seams: QEMU process, QMP session, short PYHV_HOME."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pyhv.paths import HomePaths
from pyhv.worker.process import ExitInfo
from pyhv.worker.qmp import QmpEvent


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A PYHV_HOME short enough for unix socket paths (tmp_path is too long)."""
    home = Path(tempfile.mkdtemp(prefix="pyhv", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def paths(short_home: Path) -> HomePaths:
    return HomePaths(short_home, run_root=short_home / "run")


class FakeProcess:
    def __init__(self) -> None:
        self.pid = 999_999_999
        self._exit: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()

    def exit(self, returncode: int) -> None:
        if not self._exit.done():
            self._exit.set_result(ExitInfo(returncode))

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exit)

    def kill(self) -> None:
        self.exit(-9)


class FakeRunner:
    def __init__(self) -> None:
        self.argv: list[str] = []
        self.proc: FakeProcess | None = None

    async def spawn(self, argv: Sequence[str], log_path: Path) -> FakeProcess:
        self.argv = list(argv)
        self.proc = FakeProcess()
        return self.proc


class FakeQmp:
    """Answers like QEMU 7.2 for the commands the worker sends; quitting ends the process."""

    def __init__(self, runner: FakeRunner, *, guest_powers_off: bool = True) -> None:
        self.runner = runner
        self.guest_powers_off = guest_powers_off
        self.commands: list[str] = []
        self.status = "prelaunch"
        self._events: asyncio.Queue[QmpEvent] = asyncio.Queue()

    def _shutdown(self, reason: str) -> None:
        self._events.put_nowait(
            QmpEvent("SHUTDOWN", {"guest": reason.startswith("guest"), "reason": reason})
        )
        assert self.runner.proc is not None
        asyncio.get_running_loop().call_later(0.01, self.runner.proc.exit, 0)

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.commands.append(cmd)
        if cmd == "cont":
            self.status = "running"
        elif cmd == "stop":
            self.status = "paused"
        elif cmd == "quit":
            self._shutdown("host-qmp-quit")
        elif cmd == "system_powerdown" and self.guest_powers_off:
            self._shutdown("guest-shutdown")
        elif cmd == "query-status":
            return {"status": self.status, "running": self.status == "running"}
        return {}

    def send_fd(self, fd: int) -> None:
        pass

    async def events(self) -> AsyncIterator[QmpEvent]:
        while True:
            yield await self._events.get()

    async def close(self) -> None:
        pass
