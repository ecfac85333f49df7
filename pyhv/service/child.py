"""pyhvd as a child process of a program that needs one for a while (the demo, benchmarks).

Production runs pyhvd under systemd or in a terminal; this starts the same ``pyhvd --home``
in the foreground of the caller, waits until it answers, and stops it at the end. VMs it
started keep running after it stops, as always: stop them first.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pyhv.client import PyhvClient
from pyhv.errors import PyhvError
from pyhv.paths import HomePaths
from pyhv.service import default_socket
from pyhv.service.schemas import HostInfo

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.2


@contextmanager
def child_pyhvd(home: Path, env: Mapping[str, str], log_path: Path) -> Iterator[HostInfo]:
    """pyhvd serving ``home`` (on its default socket), logging to ``log_path``.

    :raises PyhvError: when it exits or does not answer within a minute.
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyhv.service", "--home", str(home)],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield _wait_until_serving(proc, default_socket(HomePaths(home)), log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_serving(proc: subprocess.Popen[bytes], socket: Path, log_path: Path) -> HostInfo:
    deadline = time.monotonic() + START_TIMEOUT_S
    with PyhvClient(socket, timeout=5) as client:
        while True:
            if proc.poll() is not None:
                last = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise PyhvError(f"pyhvd exited: {' '.join(last) or f'see {log_path}'}")
            try:
                return client.host()
            except PyhvError:
                if time.monotonic() > deadline:
                    raise PyhvError(f"pyhvd did not answer in time: see {log_path}") from None
                time.sleep(POLL_S)
