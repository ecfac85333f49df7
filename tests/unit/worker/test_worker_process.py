"""QEMU's process must die with its worker: checked with ``sleep`` standing in for QEMU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

CHILD = """
import asyncio, sys
from pathlib import Path
from pyhv.worker.process import QemuRunner
async def main():
    proc = await QemuRunner().spawn(["sleep", "60"], Path(sys.argv[1]))
    print(proc.pid, flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_child_dies_with_parent_and_has_own_group(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "log")], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert os.getpgid(pid) == pid
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the child outlived its parent")
