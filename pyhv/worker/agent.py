"""Client of the QEMU guest agent (the integration services channel) over the VM's qga socket.

The agent speaks JSON lines over virtio-serial. A connection can hold stale bytes from an
earlier, abandoned request, so every new connection starts with ``guest-sync-delimited``: the
agent answers after a 0xFF byte, and everything before the answer carrying our random id is
discarded (QEMU guest agent protocol, "guest-sync-delimited").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from dataclasses import dataclass
from typing import Any

from pyhv.errors import PyhvError, StateError

DELIMITER = b"\xff"
# qemu-ga keeps at most 16 MiB of each of a command's stdout and stderr (GUEST_EXEC_MAX_OUTPUT
# in qga/commands.c) and returns both base64-encoded in the one JSON line of guest-exec-status;
# asyncio's default 64 KiB line limit would break on the first big output.
GUEST_EXEC_MAX_OUTPUT = 16 * 1024 * 1024
LINE_LIMIT = 2 * 4 * -(-GUEST_EXEC_MAX_OUTPUT // 3) + 1024 * 1024


class AgentError(PyhvError):
    """The guest agent answered, but with an error."""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    signal: int | None = None


def exec_request(argv: list[str], stdin: bytes | None) -> dict[str, Any]:
    """Arguments of ``guest-exec`` for a command line."""
    args: dict[str, Any] = {"path": argv[0], "arg": argv[1:], "capture-output": True}
    if stdin:
        args["input-data"] = base64.b64encode(stdin).decode()
    return args


def parse_exec_status(status: dict[str, Any]) -> ExecResult | None:
    """``None`` while the command still runs, else its result with the output decoded."""
    if not status.get("exited"):
        return None
    sig = status.get("signal")
    return ExecResult(
        exit_code=int(status.get("exitcode", 128 + (sig or 0))),
        stdout=base64.b64decode(status.get("out-data", "")),
        stderr=base64.b64decode(status.get("err-data", "")),
        signal=sig,
    )


class GuestAgent:
    """One VM's agent channel; requests are serialized because the channel is a single stream."""

    def __init__(self, socket_path: str, vm_name: str, *, timeout: float = 10.0) -> None:
        self._path = socket_path
        self.vm_name = vm_name  # the worker updates it when the VM is renamed
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _no_agent(self, why: str) -> StateError:
        return StateError(f"VM '{self.vm_name}' has no working guest agent ({why})")

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self._path, limit=LINE_LIMIT
                )
            except OSError as e:
                raise self._no_agent(f"agent channel unavailable: {e.strerror}") from e
            try:
                await self._sync(self._reader, self._writer)
            except BaseException:
                await self.close()
                raise
        return self._reader, self._writer

    async def _sync(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        token = random.randrange(1, 2**31)
        msg = {"execute": "guest-sync-delimited", "arguments": {"id": token}}
        writer.write(DELIMITER + json.dumps(msg).encode() + b"\n")
        await writer.drain()
        while True:
            try:
                await reader.readuntil(DELIMITER)
            except asyncio.LimitOverrunError as e:
                # Stale replies of abandoned requests can together exceed any limit: drop them.
                await reader.readexactly(e.consumed)
                continue
            line = await reader.readline()
            with contextlib.suppress(ValueError):
                if json.loads(line).get("return") == token:
                    return

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def request(
        self, cmd: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Send one command and return its ``return`` value; ``timeout`` overrides the
        channel's for an answer that may take longer.

        :raises StateError: no answer within the timeout (no agent running in the guest).
        :raises AgentError: the agent refused the command.
        """
        timeout = timeout or self._timeout
        async with self._lock:
            try:
                async with asyncio.timeout(timeout):
                    reader, writer = await self._open()
                    msg: dict[str, Any] = {"execute": cmd}
                    if args:
                        msg["arguments"] = args
                    writer.write(json.dumps(msg).encode() + b"\n")
                    await writer.drain()
                    reply = json.loads(await reader.readline())
            except TimeoutError as e:
                await self.close()
                raise self._no_agent(f"no answer within {timeout:g} s") from e
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
            ) as e:
                await self.close()
                raise self._no_agent(f"channel broken: {e}") from e
        if "error" in reply:
            raise AgentError(f"guest agent refused {cmd}: {reply['error'].get('desc', reply)}")
        return reply.get("return")

    async def ping(self) -> None:
        await self.request("guest-ping")

    async def exec(
        self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 60.0
    ) -> ExecResult:
        """Run a command in the guest and wait for it, like PowerShell Direct's Invoke-Command.

        :raises AgentError: the command cannot be started or runs longer than ``timeout``.
        """
        started = await self.request("guest-exec", exec_request(argv, stdin))
        pid = started["pid"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.02
        while True:
            # The answer carries the output: tens of MiB take seconds to come through.
            wait = max(self._timeout, deadline - loop.time())
            status = await self.request("guest-exec-status", {"pid": pid}, timeout=wait)
            result = parse_exec_status(status)
            if result is not None:
                return result
            if loop.time() > deadline:
                raise AgentError(f"command {argv[0]!r} still running after {timeout:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
