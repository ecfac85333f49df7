"""What the control socket can ask a worker to do; one method per op.

Every op that changes the state records the change (which checks it is legal) before its first
``await``; ops that end QEMU answer only once the final status is written.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from typing import TYPE_CHECKING, Any

from pyhv.errors import PyhvError, QmpError, StateError, UsageError
from pyhv.model import VmState
from pyhv.model.status import LIVE_STATES
from pyhv.saved_state_file import write_run_state
from pyhv.storage.operations.files import fsync_dir
from pyhv.worker import qmp as q
from pyhv.worker.checkpoint_ops import CheckpointOps
from pyhv.worker.control import Handler, StreamHandler
from pyhv.worker.disk_ops import DiskOps
from pyhv.worker.states import Action, Event

if TYPE_CHECKING:
    from pyhv.worker.worker import Worker

DEFAULT_SHUTDOWN_TIMEOUT_S = 60.0
QUIT_TIMEOUT_S = 10.0


class WorkerOps:
    def __init__(self, worker: Worker) -> None:
        self.w = worker

    def tables(self) -> tuple[dict[str, Handler], dict[str, StreamHandler]]:
        handlers: dict[str, Handler] = {
            "status": self.status,
            "stats": self.stats,
            "pause": self.pause,
            "resume": self.resume,
            "reset": self.reset,
            "shutdown": self.shutdown,
            "turn_off": self.turn_off,
            "save": self.save,
            "exec": self.exec,
            "wait_console": self.wait_console,
            "rename": self.rename,
            **DiskOps(self.w).handlers(),
            **CheckpointOps(self.w).handlers(),
        }
        return handlers, {"console": self.console}

    def _qmp(self) -> q.Qmp:
        if self.w.qmp is None:
            raise StateError(f"VM '{self.w.config.name}' is still starting")
        return self.w.qmp

    async def status(self, args: dict[str, Any]) -> Any:
        return self.w.status.model_dump(mode="json")

    async def stats(self, args: dict[str, Any]) -> Any:
        if self.w.sampler is None or self.w.status.state not in LIVE_STATES:
            raise StateError(f"VM '{self.w.config.name}' is {self.w.status.state}: no statistics")
        sample, percent = await self.w.sampler.sample()
        sample.disks = self.w.disks.stats()
        return {"stats": sample.model_dump(mode="json"), "cpu_percent": percent}

    async def pause(self, args: dict[str, Any]) -> Any:
        await self._simple(Action.PAUSE, "stop")
        return self.w.status.model_dump(mode="json")

    async def resume(self, args: dict[str, Any]) -> Any:
        await self._simple(Action.RESUME, "cont")
        return self.w.status.model_dump(mode="json")

    async def reset(self, args: dict[str, Any]) -> Any:
        was = self.w.status.state
        await self._simple(Action.RESET, "system_reset")
        if was == VmState.PAUSED:
            await self._qmp().execute("cont")
        return self.w.status.model_dump(mode="json")

    async def _simple(self, action: Action, command: str) -> None:
        qmp = self._qmp()
        before = self.w.status
        self.w.record(action)
        try:
            await qmp.execute(command)
        except PyhvError:
            self.w.set_status(before)
            raise

    async def _wait_exit(self, timeout: float | None) -> bool:
        try:
            await asyncio.wait_for(self.w.exited.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def shutdown(self, args: dict[str, Any]) -> Any:
        """ACPI power button; turn off when the guest has not powered off within the timeout."""
        timeout = float(args.get("timeout", DEFAULT_SHUTDOWN_TIMEOUT_S))
        qmp = self._qmp()
        before = self.w.status
        self.w.record(Action.SHUTDOWN)
        try:
            await qmp.execute("system_powerdown")
        except PyhvError:
            self.w.set_status(before)
            raise
        if not await self._wait_exit(timeout):
            self.w.log.info("guest ignored the power button for %g s: turning off", timeout)
            await self._quit()
        return self.w.status.model_dump(mode="json")

    async def turn_off(self, args: dict[str, Any]) -> Any:
        self.w.record(Action.TURN_OFF)
        await self._quit()
        return self.w.status.model_dump(mode="json")

    async def _quit(self) -> None:
        self.w.facts.stop_requested = True
        with contextlib.suppress(PyhvError):
            await self._qmp().execute("quit")
        if not await self._wait_exit(QUIT_TIMEOUT_S) and self.w.proc is not None:
            self.w.proc.kill()
            await self.w.exited.wait()

    async def save(self, args: dict[str, Any]) -> Any:
        """Pause, write memory and devices to a file, rename it into place, quit QEMU.

        Beside it goes the run state (Running or Paused) that a start from Saved brings back.
        """
        qmp = self._qmp()
        was = self.w.status.state
        self.w.record(Action.SAVE)
        target = self.w.paths.vm_saved_state(self.w.config.id)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            if was == VmState.RUNNING:
                await qmp.execute("stop")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                await q.migrate_to_fd(qmp, fd, "save")
                await q.wait_migration(qmp)
                await asyncio.to_thread(os.fsync, fd)
            finally:
                os.close(fd)
            write_run_state(
                self.w.paths.vm_saved_state_info(self.w.config.id),
                paused=was == VmState.PAUSED,
            )
            os.replace(tmp, target)
            fsync_dir(target.parent)
        except PyhvError:
            tmp.unlink(missing_ok=True)
            with contextlib.suppress(QmpError):
                await qmp.execute("cont")
            self.w.record(Event.SAVE_FAILED)
            raise
        self.w.facts.saved = True
        await self._quit()
        return self.w.status.model_dump(mode="json")

    async def exec(self, args: dict[str, Any]) -> Any:
        argv = args.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise UsageError("exec needs a command: pyhv vm exec NAME -- COMMAND [ARGS…]")
        if self.w.status.state != VmState.RUNNING:
            raise StateError(
                f"cannot run a command in VM '{self.w.config.name}': it is {self.w.status.state}"
            )
        stdin = base64.b64decode(args["stdin"]) if args.get("stdin") else None
        result = await self.w.agent.exec(
            argv, stdin=stdin, timeout=float(args.get("timeout", 60.0))
        )
        return {
            "exit_code": result.exit_code,
            "signal": result.signal,
            "stdout": base64.b64encode(result.stdout).decode(),
            "stderr": base64.b64encode(result.stderr).decode(),
        }

    async def rename(self, args: dict[str, Any]) -> Any:
        """The service renamed the running VM: the worker's messages name it as users now do."""
        name = args.get("name")
        if not isinstance(name, str) or not name:
            raise UsageError("rename needs the VM's new name")
        self.w.config = self.w.config.model_copy(update={"name": name})
        self.w.agent.vm_name = name
        return None

    async def wait_console(self, args: dict[str, Any]) -> Any:
        """True once the text appeared on the console during this run, False on timeout."""
        text = str(args.get("text", "")).encode()
        return await self.w.console.wait_for(text, float(args.get("timeout", 60.0)))

    async def console(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Raw console: backlog first, then live output; input goes to the guest."""
        backlog, queue = self.w.console.subscribe()

        async def to_client() -> None:
            writer.write(backlog)
            while (data := await queue.get()) is not None:
                writer.write(data)
                await writer.drain()

        async def from_client() -> None:
            while data := await reader.read(4096):
                await self.w.console.send(data)

        out, inp = asyncio.create_task(to_client()), asyncio.create_task(from_client())
        try:
            await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.w.console.unsubscribe(queue)
            for t in (out, inp):
                t.cancel()
            await asyncio.gather(out, inp, return_exceptions=True)
