"""The worker's control socket: JSON lines in, JSON lines out, one request per line.

Request ``{"id": 1, "op": "pause", "args": {}}``; reply ``{"id": 1, "ok": true, "result": …}``
or ``{"id": 1, "ok": false, "error": "<one line>", "kind": "StateError"}``. ``kind`` names a
:class:`~pyhv.errors.PyhvError` subclass so clients can raise the same error again.
A *stream* op (``console``) answers once and then turns the connection into raw bytes both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from pyhv.errors import PyhvError, UsageError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def error_reply(req_id: Any, err: BaseException) -> dict[str, Any]:
    if isinstance(err, PyhvError):
        return {"id": req_id, "ok": False, "error": str(err), "kind": type(err).__name__}
    return {"id": req_id, "ok": False, "error": f"worker error: {err}", "kind": "PyhvError"}


def parse_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """:raises UsageError: for anything that is not a well-formed request."""
    try:
        req = json.loads(line)
    except ValueError as e:
        raise UsageError(f"control request is not JSON: {e}") from e
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        raise UsageError("control request needs an 'op'")
    args = req.get("args") or {}
    if not isinstance(args, dict):
        raise UsageError("control request 'args' must be an object")
    return req.get("id"), req["op"], args


class ControlServer:
    def __init__(
        self, handlers: Mapping[str, Handler], streams: Mapping[str, StreamHandler]
    ) -> None:
        self._handlers = handlers
        self._streams = streams
        self._server: asyncio.Server | None = None
        self._idle: set[asyncio.Task[Any]] = set()  # connections waiting for a request
        self._busy: set[asyncio.Task[Any]] = set()

    async def start(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        path.chmod(0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            while True:
                self._idle.add(task)
                line = await reader.readline()
                self._idle.discard(task)
                if not line:
                    break
                self._busy.add(task)
                stream = await self._one(line, writer)
                if stream is not None:
                    await stream(reader, writer)
                    break
                self._busy.discard(task)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._idle.discard(task)
            self._busy.discard(task)
            writer.close()

    async def _one(self, line: bytes, writer: asyncio.StreamWriter) -> StreamHandler | None:
        req_id: Any = None
        stream = None
        try:
            req_id, op, args = parse_request(line)
            if op in self._streams:
                stream = self._streams[op]
                reply: dict[str, Any] = {"id": req_id, "ok": True, "result": None}
            elif op in self._handlers:
                reply = {"id": req_id, "ok": True, "result": await self._handlers[op](args)}
            else:
                raise UsageError(f"unknown control op {op!r}")
        except PyhvError as e:
            reply = error_reply(req_id, e)
        except Exception as e:
            log.exception("control op failed")
            reply = error_reply(req_id, e)
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
        return stream if reply["ok"] else None

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop listening; let requests in flight (a shutdown waiting for QEMU) answer first."""
        if self._server is not None:
            self._server.close()
        for t in list(self._idle):
            t.cancel()
        current = asyncio.current_task()
        busy = [t for t in self._busy if t is not current]
        if busy:
            await asyncio.wait(busy, timeout=grace_s)
        for t in busy:
            t.cancel()
        with contextlib.suppress(Exception):
            if self._server is not None:
                await self._server.wait_closed()
