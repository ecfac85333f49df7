"""Loading a memory file into a QEMU waiting with ``-incoming defer``: the end comes with
QEMU's MIGRATION event, a QEMU that gives up on the stream is noticed by the status poll, and
a load that never ends times out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from test_worker_lifecycle import Listeners

from pyhv.errors import QmpError
from pyhv.worker import memory_load
from pyhv.worker.memory_load import load_memory
from pyhv.worker.qmp import QmpEvent


class IncomingQmp(Listeners):
    """QEMU loading the stream: ``outcome`` after ``delay`` s, ``completed`` (paused), a
    ``failed`` event, ``exit`` (QEMU 7.2 exits on a bad stream: no event, the status
    becomes ``shutdown``), or ``never``."""

    def __init__(self, outcome: str, delay: float = 0.01) -> None:
        super().__init__()
        self.outcome, self.delay = outcome, delay
        self.status = "inmigrate"
        self.sent: list[str] = []

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.sent.append(cmd)
        if cmd == "migrate-incoming":
            asyncio.get_running_loop().call_later(self.delay, self._end)
        elif cmd == "query-status":
            return {"status": self.status}
        return {}

    def send_fd(self, fd: int) -> None:
        pass

    def _end(self) -> None:
        if self.outcome == "completed":
            self.status = "paused"
            self.emit(QmpEvent("MIGRATION", {"status": "active"}))
            self.emit(QmpEvent("MIGRATION", {"status": "completed"}))
        elif self.outcome == "failed":
            self.emit(QmpEvent("MIGRATION", {"status": "failed"}))
        elif self.outcome == "exit":
            self.status = "shutdown"


def memory(tmp_path: Path) -> Path:
    path = tmp_path / "c1.vmrs"
    path.write_bytes(b"QEVM")
    return path


def test_the_load_ends_with_the_event_not_a_poll(tmp_path: Path) -> None:
    qmp = IncomingQmp("completed")

    async def go() -> float:
        started = asyncio.get_running_loop().time()
        await load_memory(cast(Any, qmp), memory(tmp_path), timeout=5)
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(go()) < memory_load.LIVENESS_S  # no poll interval waited out
    assert qmp.sent[0] == "migrate-set-capabilities"  # events on before the stream
    assert qmp.sent.index("migrate-incoming") < qmp.sent.index("query-status")


@pytest.mark.parametrize("outcome", ["failed", "exit"])
def test_a_stream_qemu_cannot_load_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    monkeypatch.setattr(memory_load, "LIVENESS_S", 0.02)
    qmp = IncomingQmp(outcome)
    with pytest.raises(QmpError, match=r"c1\.vmrs") as err:
        asyncio.run(load_memory(cast(Any, qmp), memory(tmp_path), timeout=5))
    assert "\n" not in str(err.value)


def test_a_load_that_never_ends_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_load, "LIVENESS_S", 0.02)
    qmp = IncomingQmp("never")
    with pytest.raises(QmpError, match=r"took over 0\.1 s"):
        asyncio.run(load_memory(cast(Any, qmp), memory(tmp_path), timeout=0.1))
