"""Spawning QEMU so that it can never outlive its worker, and describing how it ended.

QEMU runs in its own process group (a Ctrl-C aimed at a terminal never reaches it) with
``PR_SET_PDEATHSIG=SIGKILL``: when the worker dies, even by SIGKILL, the kernel kills QEMU.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pyhv.errors import PyhvError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class SpawnError(PyhvError):
    """QEMU could not be started at all (binary missing, not executable)."""


@dataclass(frozen=True)
class ExitInfo:
    """How a process ended: ``returncode`` as asyncio reports it (negative = signal)."""

    returncode: int

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


def describe_exit(info: ExitInfo, stderr_tail: str = "") -> str:
    """One line for a user saying why QEMU ended, e.g. ``QEMU was killed by signal 9 (SIGKILL)``."""
    if info.signal is not None:
        try:
            name = signal.Signals(info.signal).name
        except ValueError:
            name = "unknown"
        return f"QEMU was killed by signal {info.signal} ({name})"
    text = f"QEMU exited with code {info.returncode}"
    return f"{text}: {stderr_tail}" if stderr_tail else text


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(127)
    # The parent may have died before prctl took effect; then nobody would ever kill us.
    if os.getppid() != parent_pid:
        os._exit(127)


class RunningProcess(Protocol):
    pid: int

    async def wait(self) -> ExitInfo: ...

    def kill(self) -> None: ...


class ProcessRunner(Protocol):
    """The seam through which the worker starts QEMU; tests pass a fake."""

    async def spawn(self, argv: Sequence[str], log_path: Path) -> RunningProcess: ...


class _AsyncioProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    async def wait(self) -> ExitInfo:
        return ExitInfo(await self._proc.wait())

    def kill(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()


class QemuRunner:
    """Starts QEMU for real: own process group, dies with the worker, output into ``log_path``."""

    async def spawn(self, argv: Sequence[str], log_path: Path) -> RunningProcess:
        parent = os.getpid()
        with open(log_path, "ab") as log:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    preexec_fn=lambda: _die_with_parent(parent),
                    process_group=0,
                )
            except OSError as e:
                raise SpawnError(f"cannot start {argv[0]}: {e.strerror}") from e
        return _AsyncioProcess(proc)


def tail_line(path: Path, max_bytes: int = 4096) -> str:
    """The last non-empty line of a log, for error messages; empty when there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
