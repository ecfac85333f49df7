"""The guest agent client against a fake agent speaking the qga protocol on a unix socket."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from pyhv.errors import StateError
from pyhv.worker import agent as agent_module
from pyhv.worker.agent import AgentError, ExecResult, GuestAgent, parse_exec_status


async def fake_agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Replies like qemu-ga; leaves a stale line first to prove the sync skips it."""
    writer.write(b'{"return": {"stale": true}}\n')
    polls = 0
    while line := await reader.readline():
        msg = json.loads(line.lstrip(b"\xff"))
        cmd, args = msg["execute"], msg.get("arguments", {})
        if cmd == "guest-sync-delimited":
            writer.write(b"\xff" + json.dumps({"return": args["id"]}).encode() + b"\n")
        elif cmd == "guest-exec":
            writer.write(b'{"return": {"pid": 42}}\n')
        elif cmd == "guest-exec-status":
            polls += 1
            done = {
                "exited": True,
                "exitcode": 3,
                "out-data": base64.b64encode(b"out\n").decode(),
                "err-data": base64.b64encode(b"err\n").decode(),
            }
            writer.write(json.dumps({"return": done if polls > 1 else {"exited": False}}).encode())
            writer.write(b"\n")
        else:
            writer.write(b'{"error": {"class": "CommandNotFound", "desc": "no such command"}}\n')
        await writer.drain()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
T = TypeVar("T")


def run_with(handler: Handler, sock: Path, coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def go() -> T:
        server = await asyncio.start_unix_server(handler, path=str(sock))
        try:
            return await coro_fn()
        finally:
            server.close()

    return asyncio.run(go())


def exec_once(agent_server: Handler, sock: Path) -> ExecResult:
    """One ``exec`` through a fresh :class:`GuestAgent` against ``agent_server``."""

    async def use() -> ExecResult:
        agent = GuestAgent(str(sock), "vm1", timeout=5)
        try:
            return await agent.exec(["sh", "-c", "x"])
        finally:
            await agent.close()

    return run_with(agent_server, sock, use)


def test_exec_returns_output_and_exit_code(short_home: Path) -> None:
    result = exec_once(fake_agent, short_home / "qga.sock")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")


def test_agent_error_is_reported(short_home: Path) -> None:
    sock = short_home / "qga.sock"

    async def use() -> None:
        agent = GuestAgent(str(sock), "vm1", timeout=5)
        try:
            await agent.request("guest-nope")
        finally:
            await agent.close()

    with pytest.raises(AgentError, match="no such command"):
        run_with(fake_agent, sock, use)


def test_silent_agent_times_out_with_clear_error(short_home: Path) -> None:
    sock = short_home / "qga.sock"

    async def use() -> None:
        await GuestAgent(str(sock), "vm1", timeout=0.2).ping()

    with pytest.raises(StateError, match="VM 'vm1' has no working guest agent"):
        run_with(silent, sock, use)


def test_missing_channel_is_clear(short_home: Path) -> None:
    async def use() -> None:
        await GuestAgent(str(short_home / "none.sock"), "vm1", timeout=1).ping()

    with pytest.raises(StateError, match="no working guest agent"):
        asyncio.run(use())


def test_exec_status_signal() -> None:
    result = parse_exec_status({"exited": True, "signal": 9})
    assert result is not None and result.exit_code == 137 and result.signal == 9
    assert parse_exec_status({"exited": False}) is None


BIG_OUTPUT = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MiB, ~9 MiB in the JSON line


async def big_agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Starts each connection with the 1 MiB rest of an abandoned reply (no delimiter in it),
    then answers guest-exec-status with several MiB of output, as qemu-ga does: one line."""
    writer.write(b'{"return": {"out-data": "' + b"A" * 1024 * 1024)
    while line := await reader.readline():
        msg = json.loads(line.lstrip(b"\xff"))
        cmd, args = msg["execute"], msg.get("arguments", {})
        if cmd == "guest-sync-delimited":
            reply: object = args["id"]
            writer.write(b"\xff")
        elif cmd == "guest-exec":
            reply = {"pid": 42}
        elif cmd == "guest-exec-status":
            reply = {
                "exited": True,
                "exitcode": 0,
                "out-data": base64.b64encode(BIG_OUTPUT).decode(),
            }
        else:
            reply = {}
        writer.write(json.dumps({"return": reply}).encode() + b"\n")
        await writer.drain()


def test_exec_returns_output_of_several_mib(short_home: Path) -> None:
    """The whole output comes back in one line far above asyncio's 64 KiB default limit."""
    assert exec_once(big_agent, short_home / "qga.sock").stdout == BIG_OUTPUT


def test_reply_over_the_limit_does_not_poison_the_next_request(
    short_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply too long fails its request only; the next one re-syncs past the stale bytes,
    even when they are longer than the limit."""
    monkeypatch.setattr(agent_module, "LINE_LIMIT", 64 * 1024)
    sock = short_home / "qga.sock"

    async def use() -> Exception | None:
        agent = GuestAgent(str(sock), "vm1", timeout=5)
        try:
            try:
                await agent.request("guest-exec-status", {"pid": 42})
            except StateError as e:
                failed: Exception | None = e
            else:
                failed = None
            await agent.ping()
            return failed
        finally:
            await agent.close()

    failed = run_with(big_agent, sock, use)
    assert isinstance(failed, StateError) and "no working guest agent" in str(failed)
