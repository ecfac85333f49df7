"""The VM's QMP session: typed calls on top of qemu.qmp's ``QMPClient``.

This is the one place where qemu.qmp's exceptions become :class:`~pyhv.errors.QmpError`, so the
rest of the worker never sees a foreign error type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from qemu.qmp import EventListener, ExecInterruptedError, ExecuteError, QMPClient, QMPError

from pyhv.errors import QmpError

log = logging.getLogger(__name__)

#: How often to try QEMU's monitor socket until it accepts: a start or a checkpoint apply
#: waits for it, and QEMU is up in 20-50 ms here.
CONNECT_PROBE_S = 0.003


@dataclass(frozen=True)
class QmpEvent:
    name: str
    data: dict[str, Any]


def _event(msg: Any) -> QmpEvent:
    return QmpEvent(str(msg["event"]), cast(dict[str, Any], msg.get("data", {})))


class EventQueue(Protocol):
    """Events of some names, in order, from the moment the queue was made."""

    async def get(self) -> QmpEvent: ...


@contextlib.contextmanager
def map_qmp_errors(what: str) -> Iterator[None]:
    """Translate qemu.qmp's errors at the boundary, once."""
    try:
        yield
    except ExecuteError as e:
        raise QmpError(f"QEMU refused {what}: {e.error.error.desc}") from e
    except ExecInterruptedError as e:
        raise QmpError(f"QEMU went away during {what}") from e
    except QMPError as e:
        raise QmpError(f"QMP {what} failed: {e}") from e
    except OSError as e:
        raise QmpError(f"QMP {what} failed: {e.strerror or e}") from e


class Qmp(Protocol):
    """What the worker needs from QEMU's monitor; tests implement it with a fake."""

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any: ...

    def send_fd(self, fd: int) -> None: ...

    def events(self) -> AsyncIterator[QmpEvent]: ...

    def listen(self, *names: str) -> contextlib.AbstractContextManager[EventQueue]: ...

    async def close(self) -> None: ...


class QmpSession:
    """A connected monitor. Build it with :meth:`connect`."""

    def __init__(self, client: QMPClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, socket_path: str, name: str, timeout: float) -> QmpSession:
        """Connect once QEMU has created its socket (QEMU creates it a moment after exec).

        :raises QmpError: when the monitor does not answer within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # QEMU binds the socket a moment before it listens: probe until a connect succeeds,
        # so qemu.qmp never logs a failed attempt.
        while not await _accepts(socket_path):
            if loop.time() >= deadline:
                raise QmpError(f"QEMU's monitor did not answer within {timeout:g} s")
            if not os.path.isdir(os.path.dirname(socket_path)):
                # Removed with PYHV_HOME, say: the socket can never appear, and QEMU runs on.
                raise QmpError(f"the folder of QEMU's monitor socket {socket_path} vanished")
            await asyncio.sleep(CONNECT_PROBE_S)
        client = QMPClient(name)
        try:
            await asyncio.wait_for(client.connect(socket_path), max(1.0, deadline - loop.time()))
        except TimeoutError as e:
            raise QmpError(f"QEMU's monitor did not answer within {timeout:g} s") from e
        except QMPError as e:
            raise QmpError(f"QEMU's monitor broke off the connection: {e}") from e
        return cls(client)

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        with map_qmp_errors(cmd):
            log.debug("--> %s %s", cmd, args or "")
            result = await self._client.execute(cmd, args)
            log.debug("<-- %s", result)
            return result

    def send_fd(self, fd: int) -> None:
        with map_qmp_errors("fd passing"):
            self._client.send_fd_scm(fd)

    async def events(self) -> AsyncIterator[QmpEvent]:
        async for msg in self._client.events:
            yield _event(msg)

    @contextlib.contextmanager
    def listen(self, *names: str) -> Iterator[EventQueue]:
        """A queue of the events named, beside :meth:`events` (each reader gets every
        event: an operation waiting for one does not take it from the worker's reader)."""
        listener = EventListener(names)
        with self._client.listen(listener):
            yield _Listened(listener)

    async def close(self) -> None:
        """Disconnect; errors are moot here (QEMU is usually gone: disconnect re-raises EOF)."""
        try:
            await self._client.disconnect()
        except Exception as e:
            log.debug("QMP disconnect: %r", e)


@dataclass(frozen=True)
class _Listened:
    listener: EventListener

    async def get(self) -> QmpEvent:
        return _event(await self.listener.get())


async def _accepts(socket_path: str) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(socket_path)
    except OSError:
        return False
    writer.close()
    return True


async def query_status(qmp: Qmp) -> str:
    """QEMU's run state: ``running``, ``paused``, ``inmigrate``, ``postmigrate``, …"""
    return str((await qmp.execute("query-status"))["status"])


async def vcpu_thread_ids(qmp: Qmp) -> list[int]:
    """Host TIDs of the vCPU threads in vCPU order, for CPU accounting."""
    cpus = await qmp.execute("query-cpus-fast")
    return [int(c["thread-id"]) for c in sorted(cpus, key=lambda c: c["cpu-index"])]


async def migrate_to_fd(qmp: Qmp, fd: int, fdname: str) -> None:
    """Start writing the VM's state into ``fd``; completion comes as a MIGRATION event."""
    qmp.send_fd(fd)
    await qmp.execute("getfd", {"fdname": fdname})
    await qmp.execute("migrate", {"uri": f"fd:{fdname}"})


async def migrate_from_fd(qmp: Qmp, fd: int, fdname: str) -> None:
    """Load state from ``fd`` into a QEMU started with ``-incoming defer``."""
    qmp.send_fd(fd)
    await qmp.execute("getfd", {"fdname": fdname})
    await qmp.execute("migrate-incoming", {"uri": f"fd:{fdname}"})


async def wait_migration(qmp: Qmp, *, poll_s: float = 0.1) -> dict[str, Any]:
    """Poll ``query-migrate`` until the migration ends; returns its last answer.

    Polling instead of waiting on the MIGRATION event keeps this free of races with the
    worker's single event reader.

    :raises QmpError: when the migration failed or was cancelled.
    """
    while True:
        info = await qmp.execute("query-migrate")
        status = info.get("status")
        if status == "completed":
            return cast(dict[str, Any], info)
        if status in ("failed", "cancelled"):
            detail = info.get("error-desc", status)
            raise QmpError(f"saving the VM's state failed: {detail}")
        await asyncio.sleep(poll_s)
