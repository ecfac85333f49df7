"""A warm process that forks VM workers: ``python -m pyhv.worker.forkserver FD``.

A worker started afresh pays Python's start-up and its imports (pydantic models, asyncio, the
NBD provider, QMP: about 0.35 s of CPU, more on a loaded host) before it can start QEMU. pyhvd
keeps this process instead, which has imported the worker once and waits on the unix socket
``FD`` it inherited; each request forks a child that becomes the worker just as
``python -m pyhv.worker ARGS`` would (own session, stdio on its log, the request's environment,
directory and process title), so a VM start pays a fork. Like a zygote it never runs worker
code itself and starts no thread, so each child begins single-threaded with nothing running.

Protocol (SOCK_SEQPACKET, one JSON object per message): a request carries the worker's
arguments, environment, working directory and log path, plus one file descriptor: the
request's own channel. On it the server answers ``{"pid": N}`` once forked, then
``{"exit": CODE}`` (as ``Popen.returncode`` would say) once it has reaped the child. The server
exits when pyhvd's end of ``FD`` closes; its workers live on.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import traceback
from typing import Any, NoReturn

from setproctitle import setproctitle

from pyhv.storage.chains import driver_for
from pyhv.storage.image import ImageFormat
from pyhv.storage.locks import HOLDER_ENV, holder_title
from pyhv.worker import __main__ as worker_main
from pyhv.worker.spawner import MAX_MESSAGE


def send(channel: socket.socket, message: dict[str, Any]) -> None:
    """Best effort: a launcher that stopped listening needs no answer."""
    with contextlib.suppress(OSError):
        channel.send(json.dumps(message).encode())


def run_worker(args: list[str]) -> int:
    """The worker's main as ``python -m pyhv.worker`` runs it; its exit code."""
    try:
        worker_main.main(args)
        code: int = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def become_worker(request: dict[str, Any], inherited: list[socket.socket | int]) -> NoReturn:
    """In the forked child: drop the server's state, take the request's, run the worker."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for held in inherited:
            if isinstance(held, int):
                os.close(held)
            else:
                held.close()
        os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        args = [str(a) for a in request["args"]]
        # What `ps` shows, what worker_alive() recognises a VM's worker by, and what names
        # the VM when another process finds one of its disks locked.
        title = " ".join(["pyhv-worker", *args])
        setproctitle(holder_title(title, request["env"].get(HOLDER_ENV)))
        code = run_worker(args)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def reap(channels: dict[int, socket.socket]) -> None:
    """Collect every ended child and tell its launcher how it ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        channel = channels.pop(pid, None)
        if channel is not None:
            send(channel, {"exit": os.waitstatus_to_exitcode(status)})
            channel.close()


def serve(control: socket.socket) -> None:
    """Fork a worker per request until ``control`` closes."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD wakes the selector
    channels: dict[int, socket.socket] = {}
    with selectors.DefaultSelector() as selector:
        selector.register(control, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is control:
                    message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 1)
                    if not message:
                        return
                    if not fds:
                        continue
                    channel = socket.socket(fileno=fds[0])
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        held: list[socket.socket | int] = [control, channel, wake_r, wake_w]
                        held += channels.values()
                        selector.close()
                        become_worker(json.loads(message), held)
                    channels[pid] = channel
                    send(channel, {"pid": pid})
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
            reap(channels)


def warm() -> None:
    """Import now what a worker would import on its way to a running VM: every image
    format's driver (the storage layer loads them on first use: 0.05–0.15 s for VHDX), the
    threads behind ``asyncio.to_thread`` and the UTF-16 codec of VHDX metadata."""
    for fmt in ImageFormat:
        driver_for(fmt)
    importlib.import_module("concurrent.futures.thread")
    codecs.lookup("utf-16-le")


def main() -> None:
    worker_main.one_malloc_arena()
    warm()
    # Also readies setproctitle while the environment is still the one the process got: once
    # cleared (as each child does), it finds no room to write a title into.
    setproctitle("pyhv-worker-forkserver")
    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
