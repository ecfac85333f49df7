"""A real pyhvd process on a real unix socket with a temporary PYHV_HOME, for API tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pyhv.client import PyhvClient

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_home() -> Path:
    # Short, so every socket path under it fits in sun_path.
    return Path(tempfile.mkdtemp(prefix="pyhv", dir="/tmp"))


@dataclass
class Pyhvd:
    home: Path
    env: dict[str, str]
    tcp_port: int | None = None
    tls: tuple[Path, Path] | None = None  # certificate, key
    proc: subprocess.Popen[bytes] | None = None
    clients: list[PyhvClient] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.home / "run" / "pyhvd.sock"

    @property
    def log(self) -> Path:
        return self.home / "pyhvd.log"

    def start(self) -> None:
        argv = [sys.executable, "-m", "pyhv.service", "--home", str(self.home)]
        if self.tcp_port is not None:
            argv += ["--tcp", f"127.0.0.1:{self.tcp_port}"]
        if self.tls is not None:
            argv += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with PyhvClient(self.socket, timeout=5) as c:
                    c.host()
                return
            except Exception:
                time.sleep(0.1)
        raise AssertionError(f"pyhvd did not come up:\n{self.log.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def client(self, **kwargs: object) -> PyhvClient:
        c = PyhvClient(self.socket, **kwargs)  # type: ignore[arg-type]
        self.clients.append(c)
        return c

    def tcp_client(self, token: str | None) -> PyhvClient:
        if self.tls is not None:
            url = f"https://127.0.0.1:{self.tcp_port}"
            c = PyhvClient(base_url=url, token=token, verify=str(self.tls[0]))
        else:
            c = PyhvClient(base_url=f"http://127.0.0.1:{self.tcp_port}", token=token)
        self.clients.append(c)
        return c


PyhvdFactory = Callable[..., Pyhvd]


def new_pyhvd(tcp: bool = False, extra_env: dict[str, str] | None = None) -> Pyhvd:
    home = make_home()
    (home / "disks").mkdir()
    env = dict(os.environ, PYHV_HOME=str(home), **(extra_env or {}))
    env.pop("PYHV_RUN_DIR", None)
    return Pyhvd(home, env, free_port() if tcp else None)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_leftover_workers(d: Pyhvd) -> None:
    """Workers outlive pyhvd by design; a test must not leave them running."""
    pids = []
    for pid_file in (d.home / "run").glob("*/worker.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
        except (ValueError, OSError):
            pass
    deadline = time.monotonic() + 30
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _running(p)]
        time.sleep(0.1)
