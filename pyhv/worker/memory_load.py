"""Loading a memory file (a Saved VM's state, a checkpoint's memory) into a QEMU started
with ``-incoming defer``; both come from :mod:`pyhv.worker.memory_save` or Save.

QEMU loads the stream on its main loop and answers no command meanwhile, so the end is
learnt from its MIGRATION event the moment it comes; a status poll every
:data:`LIVENESS_S` notices a QEMU that gave up on the stream (7.2 exits then) or died.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pyhv.errors import QmpError
from pyhv.worker import qmp as q

FD_NAME = "load"
LIVENESS_S = 0.25


async def load_memory(qmp: q.Qmp, memory: Path, timeout: float) -> None:
    """Load ``memory``; QEMU ends paused (``cont`` runs it).

    :raises QmpError: QEMU refused the stream, failed to load it, or took over ``timeout``.
    """
    caps = [{"capability": "events", "state": True}]
    await qmp.execute("migrate-set-capabilities", {"capabilities": caps})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with qmp.listen("MIGRATION") as events:
        fd = os.open(memory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            await q.migrate_from_fd(qmp, fd, FD_NAME)
        finally:
            os.close(fd)
        while True:
            try:
                ev = await asyncio.wait_for(events.get(), LIVENESS_S)
                if ev.data.get("status") in ("failed", "cancelled"):
                    raise QmpError(f"QEMU could not load {memory.name} (see its log)")
                if ev.data.get("status") != "completed":
                    continue
            except TimeoutError:
                if loop.time() > deadline:
                    raise QmpError(f"loading {memory.name} took over {timeout:g} s") from None
            status = await q.query_status(qmp)
            if status != "inmigrate":
                break
    if status not in ("paused", "prelaunch", "running"):
        raise QmpError(f"loading {memory.name} failed (QEMU is {status})")
