"""Control socket server and sync client together, over a real unix socket."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyhv.errors import ConfigError, PyhvError, StateError, UsageError
from pyhv.worker.client import WorkerClient, error_class
from pyhv.worker.control import ControlServer, parse_request


async def echo(args: dict[str, Any]) -> Any:
    return args


async def refuse(args: dict[str, Any]) -> Any:
    raise StateError("cannot pause VM 'x': it is Off")


async def crash(args: dict[str, Any]) -> Any:
    raise RuntimeError("boom")


async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"raw:" + await reader.read(5))
    await writer.drain()


@pytest.fixture
def server(short_home: Path) -> Iterator[Path]:
    sock = short_home / "control.sock"
    loop = asyncio.new_event_loop()
    control = ControlServer({"echo": echo, "refuse": refuse, "crash": crash}, {"console": stream})
    loop.run_until_complete(control.start(sock))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield sock
    asyncio.run_coroutine_threadsafe(control.close(grace_s=1), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_call_returns_result(server: Path) -> None:
    assert WorkerClient(server, "x").call("echo", {"a": 1}) == {"a": 1}


def test_errors_come_back_as_the_same_class(server: Path) -> None:
    with pytest.raises(StateError, match="cannot pause VM 'x': it is Off"):
        WorkerClient(server, "x").call("refuse")
    with pytest.raises(UsageError, match="unknown control op 'nope'"):
        WorkerClient(server, "x").call("nope")
    with pytest.raises(PyhvError, match="worker error: boom"):
        WorkerClient(server, "x").call("crash")


def test_stream_op_turns_raw(server: Path) -> None:
    sock = WorkerClient(server, "x").attach_console()
    sock.sendall(b"hello")
    assert sock.recv(100) == b"raw:hello"
    sock.close()


def test_no_worker_is_a_state_error(short_home: Path) -> None:
    with pytest.raises(StateError, match="VM 'x' is not running"):
        WorkerClient(short_home / "none.sock", "x").call("status")


def test_parse_request_rejects_garbage() -> None:
    with pytest.raises(UsageError):
        parse_request(b"not json")
    with pytest.raises(UsageError):
        parse_request(b'{"args": {}}')
    assert parse_request(b'{"id": 7, "op": "status"}') == (7, "status", {})


def test_error_class_lookup() -> None:
    assert error_class("ConfigError") is ConfigError
    assert error_class("Whatever") is PyhvError
