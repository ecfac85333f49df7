"""Starting a VM's worker as a detached process and waiting until it serves its control socket.

A :mod:`~pyhv.worker.spawner` makes the process: afresh, or forked by pyhvd's warm fork server.

The worker gets its own session (a terminal's Ctrl-C or hang-up never reaches it) and writes
its log to ``logs/<id>/worker.log``; when it fails before answering, the error is the last
line it wrote there. Its environment names it as ``VM '<name>'`` for disk-lock errors
(:mod:`pyhv.storage.locks`), so another process refused a disk is told which VM holds it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pyhv.errors import PyhvError
from pyhv.host.accel import AccelChoice, choose_accelerator
from pyhv.model import VmConfig
from pyhv.paths import HomePaths
from pyhv.storage.locks import HOLDER_ENV
from pyhv.worker.client import WorkerClient
from pyhv.worker.process import tail_line
from pyhv.worker.spawner import FreshSpawner, Spawner

ERROR_PREFIX = "pyhv-worker: error: "
START_TIMEOUT_S = 120.0
POLL_S = 0.01


def worker_args(
    paths: HomePaths, vm_id: str, *, restore: bool, accel: AccelChoice | None = None
) -> list[str]:
    """The worker's arguments; with ``accel`` it skips deciding the accelerator itself.

    The VM's id comes first: a forked worker's process title (what ``worker_alive`` checks)
    may be cut to the length of its fork server's command line and environment.
    """
    args = [vm_id, "--home", str(paths.home)]
    if accel is not None:
        args += ["--accel", accel.name, "--accel-reason", accel.reason]
    return [*args, "--restore"] if restore else args


def worker_log(paths: HomePaths, vm_id: str) -> Path:
    return paths.vm_log_dir(vm_id) / "worker.log"


def failure_message(last_line: str, returncode: int) -> str:
    """The worker's own one-line error, or a pointer to its log."""
    if ERROR_PREFIX in last_line:
        return last_line.split(ERROR_PREFIX, 1)[1]
    return f"the VM's worker exited with code {returncode}: {last_line or 'no output'}"


def start_worker(
    paths: HomePaths,
    config: VmConfig,
    *,
    restore: bool,
    timeout: float = START_TIMEOUT_S,
    spawner: Spawner | None = None,
) -> WorkerClient:
    """Start the worker (afresh unless a ``spawner`` says how) and return a client once the
    VM runs.

    :raises PyhvError: with the worker's own message when it gave up.
    """
    args = worker_args(paths, config.id, restore=restore, accel=choose_accelerator())
    log_path = worker_log(paths, config.id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, HOLDER_ENV: f"VM '{config.name}'"}
    proc = (spawner or FreshSpawner()).spawn(args, env, log_path)
    client = WorkerClient(paths.run_dir(config.id) / "control.sock", config.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise PyhvError(failure_message(tail_line(log_path), code))
        if client.socket_path.exists() and client.alive():
            proc.release()
            return client
        time.sleep(POLL_S)
    proc.kill()
    raise PyhvError(f"VM '{config.name}' did not start within {timeout:g} s: see {log_path}")
