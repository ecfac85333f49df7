"""Synchronous client of a worker's control socket, used by the CLI (and later by pyhvd).

Errors come back as the same :class:`~pyhv.errors.PyhvError` subclass the worker raised.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
from pathlib import Path
from typing import Any

from pyhv.errors import PyhvError, StateError

_ids = itertools.count(1)


def error_class(kind: str) -> type[PyhvError]:
    """The PyhvError subclass called ``kind``, or PyhvError itself for an unknown name."""
    todo: list[type[PyhvError]] = [PyhvError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == kind:
            return cls
        todo.extend(cls.__subclasses__())
    return PyhvError


def raise_for_reply(reply: dict[str, Any]) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    raise error_class(str(reply.get("kind")))(str(reply.get("error", "worker error")))


class WorkerClient:
    """One VM's worker; every call opens its own connection, so a client is cheap and stateless."""

    def __init__(self, socket_path: Path, vm_name: str, *, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.vm_name = vm_name
        self.timeout = timeout

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError as e:
            sock.close()
            raise StateError(f"VM '{self.vm_name}' is not running (no worker answers)") from e
        return sock

    def _request(
        self, sock: socket.socket, op: str, args: dict[str, Any], *, exact: bool = False
    ) -> Any:
        msg = {"id": next(_ids), "op": op, "args": args}
        try:
            sock.sendall(json.dumps(msg).encode() + b"\n")
            line = _read_line(sock, 1 if exact else 65536)
        except TimeoutError as e:
            raise PyhvError(f"VM '{self.vm_name}': worker did not answer '{op}' in time") from e
        except OSError as e:
            raise StateError(f"VM '{self.vm_name}': worker went away during '{op}'") from e
        if not line:
            raise StateError(f"VM '{self.vm_name}': worker went away during '{op}'")
        return raise_for_reply(json.loads(line))

    def call(
        self, op: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Run one op; ``timeout`` (seconds) overrides the client's default for slow ops.

        :raises StateError: the VM has no running worker.
        """
        with contextlib.closing(self._connect(timeout or self.timeout)) as sock:
            return self._request(sock, op, args or {})

    def alive(self) -> bool:
        try:
            self.call("status", timeout=2.0)
        except PyhvError:
            return False
        return True

    def attach_console(self) -> socket.socket:
        """A socket carrying the VM's serial console both ways; the caller closes it."""
        sock = self._connect(self.timeout)
        try:
            self._request(sock, "console", {}, exact=True)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock


def _read_line(sock: socket.socket, chunk: int) -> bytes:
    """Read one reply; ``chunk=1`` when raw bytes follow it that must stay in the socket."""
    out = bytearray()
    while not out.endswith(b"\n"):
        b = sock.recv(chunk)
        if not b:
            break
        out += b
    return bytes(out)
