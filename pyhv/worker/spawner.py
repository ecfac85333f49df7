"""How a worker process comes to be: started afresh, or forked by pyhvd's warm fork server.

Either way the worker is detached (its own session, outliving its starter) and runs
``python -m pyhv.worker ARGS`` with its stdio on its log. :class:`FreshSpawner` starts a new
interpreter each time; :class:`ForkServer` keeps :mod:`pyhv.worker.forkserver` running, which
has imported the worker already, and falls back to a fresh start when that process is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Protocol

from pyhv.errors import PyhvError
from pyhv.pids import pid_exists

log = logging.getLogger(__name__)

#: pyhv installs no pydantic plugins; without this, pydantic reads the metadata of every
#: installed package to look for some when the worker builds its first model (~70 ms).
WORKER_ENV = {"PYDANTIC_DISABLE_PLUGINS": "__all__"}
MAX_MESSAGE = 1 << 20  # of the fork server's protocol: a request with its environment
FORK_ANSWER_TIMEOUT_S = 120.0  # the fork server may still be importing the worker
KILL_WAIT_S = 10.0


class Spawned(Protocol):
    pid: int

    def poll(self) -> int | None:
        """The exit code once the process ended (negative: killed by that signal), else None."""

    def kill(self) -> None:
        """Kill it and wait until it is gone."""

    def release(self) -> None:
        """It runs on by itself now; whoever must reap it will, whenever it ends."""


class Spawner(Protocol):
    def spawn(self, args: list[str], env: dict[str, str], log_path: Path) -> Spawned:
        """Start ``python -m pyhv.worker ARGS`` detached, stdio on ``log_path``."""


class _Fresh:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self.pid = proc.pid

    def poll(self) -> int | None:
        return self._proc.poll()

    def kill(self) -> None:
        self._proc.kill()
        self._proc.wait()

    def release(self) -> None:
        # Reap it whenever it ends, so a long-lived caller (tests, pyhvd) keeps no zombie.
        name = f"reap-{self.pid}"
        threading.Thread(target=self._proc.wait, daemon=True, name=name).start()


class FreshSpawner:
    """A new interpreter per worker: nothing to keep running, every start pays the imports."""

    def spawn(self, args: list[str], env: dict[str, str], log_path: Path) -> Spawned:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pyhv.worker", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                close_fds=True,
                env={**env, **WORKER_ENV},
            )
        return _Fresh(proc)


class _Forked:
    """A worker forked by the fork server, which reaps it and reports its end on ``channel``."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self._channel = channel
        self._channel.setblocking(False)
        self._code: int | None = None

    def poll(self) -> int | None:
        if self._code is None and self._channel.fileno() >= 0:
            try:
                message = self._channel.recv(MAX_MESSAGE)
            except BlockingIOError:
                return None
            if message:
                self._code = int(json.loads(message)["exit"])
            elif not pid_exists(self.pid):
                self._code = 1  # the fork server died, and with it the exit code
        return self._code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._channel.settimeout(KILL_WAIT_S)
        with contextlib.suppress(OSError):
            if message := self._channel.recv(MAX_MESSAGE):
                self._code = int(json.loads(message)["exit"])
        self._channel.close()

    def release(self) -> None:
        self._channel.close()


class ForkServer:
    """pyhvd's warm worker factory. :meth:`start` returns at once (the server imports the
    worker in the background); :meth:`close` ends the server, never a worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._fresh = FreshSpawner()

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pyhv.worker.forkserver", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C is for pyhvd, which then closes it
                env={**os.environ, **WORKER_ENV},
            )
        self._control = ours

    def close(self) -> None:
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
        if self._proc is not None:
            try:
                self._proc.wait(KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def spawn(self, args: list[str], env: dict[str, str], log_path: Path) -> Spawned:
        """Forked by the server; afresh when the server is gone (and a new one starts).

        :raises PyhvError: when the server took the request but never forked.
        """
        env = {**env, **WORKER_ENV}
        request = {"args": args, "env": env, "cwd": os.getcwd(), "log": str(log_path)}
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock, theirs:
                if self._control is None:
                    raise ConnectionError("not running")
                socket.send_fds(self._control, [json.dumps(request).encode()], [theirs.fileno()])
            ours.settimeout(FORK_ANSWER_TIMEOUT_S)
            answer = ours.recv(MAX_MESSAGE)
            if not answer:
                raise ConnectionError("it exited")
        except TimeoutError:
            ours.close()
            raise PyhvError(
                f"the worker fork server did not answer within {FORK_ANSWER_TIMEOUT_S:g} s"
            ) from None
        except OSError as e:
            ours.close()
            log.warning("worker fork server unavailable (%s): starting a fresh worker", e)
            self._restart()
            return self._fresh.spawn(args, env, log_path)
        return _Forked(int(json.loads(answer)["pid"]), ours)

    def _restart(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            self.start()
