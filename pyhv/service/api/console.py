"""``/vms/{id}/console``: the serial console as a websocket (vmconnect), and its log.

The websocket's first frame is text: ``{"ok": true}``, or a problem (the same body as an HTTP
error) before the server closes. After ``ok``, binary frames carry the console both ways: the
backlog and live output from the VM, keystrokes to it. The caller needs the operate right.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from fastapi import APIRouter, Response, WebSocket, WebSocketDisconnect

from pyhv.errors import PyhvError
from pyhv.service.api.deps import Reader, Services, Svc
from pyhv.service.api.errors import problem, status_and_code
from pyhv.service.auth import Authenticator, Right, check_right

router = APIRouter(prefix="/vms", tags=["console"])

CHUNK = 65536


@router.get(
    "/{vm}/console/log",
    dependencies=[Reader],
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def console_log(vm: str, svc: Svc) -> Response:
    """Everything the VM wrote on its serial console (empty before its first start)."""
    data = await asyncio.to_thread(_read_or_empty, svc.manager.console_log(vm))
    return Response(data, media_type="application/octet-stream")


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


@router.websocket("/{vm}/console")
async def console(websocket: WebSocket, vm: str) -> None:
    await websocket.accept()
    try:
        authenticator: Authenticator = websocket.app.state.authenticator
        principal = authenticator.authenticate(websocket.headers.get("authorization"))
        check_right(principal, Right.OPERATE)
        services: Services = websocket.app.state.services
        sock = await services.manager.attach_console(vm)
    except PyhvError as err:
        status, code = status_and_code(err)
        await websocket.send_json(problem(status, code, str(err)))
        await websocket.close()
        return
    await websocket.send_json({"ok": True})
    await _bridge(websocket, sock)


async def _bridge(websocket: WebSocket, sock: socket.socket) -> None:
    """Copy both ways until either side closes."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    async def to_client() -> None:
        while data := await reader.read(CHUNK):
            await websocket.send_bytes(data)

    async def to_vm() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                writer.write(message.get("bytes") or str(message.get("text") or "").encode())
                await writer.drain()

    tasks = {asyncio.create_task(to_client()), asyncio.create_task(to_vm())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close()
