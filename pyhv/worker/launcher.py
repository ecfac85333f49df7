"""Starting a VM's worker as a detached process and waiting until it serves its control socket.

The worker gets its own session (a terminal's Ctrl-C or hang-up never reaches it) and writes
its log to ``logs/<id>/worker.log``; when it fails before answering, the error is the last
line it wrote there. Its environment names it as ``VM '<name>'`` for disk-lock errors
(:mod:`pyhv.storage.locks`), so another process refused a disk is told which VM holds it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from pyhv.errors import PyhvError
from pyhv.host.accel import AccelChoice, choose_accelerator
from pyhv.model import VmConfig
from pyhv.paths import HomePaths
from pyhv.storage.locks import HOLDER_ENV
from pyhv.worker.client import WorkerClient
from pyhv.worker.process import tail_line

ERROR_PREFIX = "pyhv-worker: error: "
START_TIMEOUT_S = 120.0
POLL_S = 0.01
#: pyhv installs no pydantic plugins; without this, pydantic reads the metadata of every
#: installed package to look for some when the worker builds its first model (~70 ms).
WORKER_ENV = {"PYDANTIC_DISABLE_PLUGINS": "__all__"}


def worker_argv(
    paths: HomePaths, vm_id: str, *, restore: bool, accel: AccelChoice | None = None
) -> list[str]:
    """The worker's command line; with ``accel`` it skips deciding the accelerator itself."""
    argv = [sys.executable, "-m", "pyhv.worker", "--home", str(paths.home), vm_id]
    if accel is not None:
        argv += ["--accel", accel.name, "--accel-reason", accel.reason]
    return [*argv, "--restore"] if restore else argv


def worker_log(paths: HomePaths, vm_id: str) -> Path:
    return paths.vm_log_dir(vm_id) / "worker.log"


def failure_message(last_line: str, returncode: int) -> str:
    """The worker's own one-line error, or a pointer to its log."""
    if ERROR_PREFIX in last_line:
        return last_line.split(ERROR_PREFIX, 1)[1]
    return f"the VM's worker exited with code {returncode}: {last_line or 'no output'}"


def start_worker(
    paths: HomePaths, config: VmConfig, *, restore: bool, timeout: float = START_TIMEOUT_S
) -> WorkerClient:
    """Start the worker and return a client once the VM runs.

    :raises PyhvError: with the worker's own message when it gave up.
    """
    argv = worker_argv(paths, config.id, restore=restore, accel=choose_accelerator())
    log_path = worker_log(paths, config.id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, HOLDER_ENV: f"VM '{config.name}'", **WORKER_ENV},
        )
    client = WorkerClient(paths.run_dir(config.id) / "control.sock", config.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise PyhvError(failure_message(tail_line(log_path), code))
        if client.socket_path.exists() and client.alive():
            # Reap it whenever it ends, so a long-lived caller (tests, pyhvd) keeps no zombie.
            threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()
            return client
        time.sleep(POLL_S)
    proc.kill()
    proc.wait()
    raise PyhvError(f"VM '{config.name}' did not start within {timeout:g} s: see {log_path}")
