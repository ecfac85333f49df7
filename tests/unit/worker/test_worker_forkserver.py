"""Workers forked by the warm fork server behave as workers started afresh: their own session,
the request's environment and directory, a process title naming their VM, the same errors and
exit codes. A fake ``qemu-system-x86_64`` (found through the request's PATH) stands in for QEMU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyhv.errors import PyhvError
from pyhv.inventory import Inventory
from pyhv.model import VmConfig, make_vm_config
from pyhv.paths import HomePaths
from pyhv.worker.launcher import start_worker, worker_args, worker_log
from pyhv.worker.process import tail_line
from pyhv.worker.spawner import ForkServer, FreshSpawner, Spawned
from pyhv.worker.status_file import worker_alive

FAKE_QEMU = """#!/bin/sh
echo "$PYHV_TEST_MARK $(pwd)" > "$PYHV_TEST_OUT.tmp" && mv "$PYHV_TEST_OUT.tmp" "$PYHV_TEST_OUT"
exec sleep 60
"""


@pytest.fixture
def forkserver() -> Iterator[ForkServer]:
    server = ForkServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def vm(paths: HomePaths) -> VmConfig:
    return Inventory(paths).create(make_vm_config(name="forked", memory_startup_mib=64))


def wait_exit(proc: Spawned, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := proc.poll()) is None:
        assert time.monotonic() < deadline, "the worker did not exit"
        time.sleep(0.05)
    return code


def test_forked_worker_takes_the_requests_environment_and_session(
    forkserver: ForkServer, paths: HomePaths, vm: VmConfig, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qemu = bin_dir / "qemu-system-x86_64"
    qemu.write_text(FAKE_QEMU)
    qemu.chmod(0o755)
    out = tmp_path / "qemu-saw"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYHV_TEST_MARK": "from-the-request",
        "PYHV_TEST_OUT": str(out),
    }
    log = worker_log(paths, vm.id)
    log.parent.mkdir(parents=True)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        proc = forkserver.spawn(worker_args(paths, vm.id, restore=False), env, log)
    finally:
        os.chdir(cwd)
    try:
        deadline = time.monotonic() + 60
        while not out.exists():
            assert proc.poll() is None, tail_line(log)
            assert time.monotonic() < deadline, "the fake QEMU never ran"
            time.sleep(0.05)
        assert out.read_text().split() == ["from-the-request", str(tmp_path)]
        assert worker_alive(proc.pid, vm.id)
        assert os.getsid(proc.pid) == proc.pid
    finally:
        proc.kill()
    assert proc.poll() == -9


def test_forked_worker_fails_as_a_fresh_one_does(
    forkserver: ForkServer, paths: HomePaths, tmp_path: Path
) -> None:
    args = worker_args(paths, "no-such-vm", restore=False)
    results = []
    for spawner in (forkserver, FreshSpawner()):
        log = tmp_path / f"{type(spawner).__name__}.log"
        code = wait_exit(spawner.spawn(args, dict(os.environ), log))
        results.append((code, tail_line(log)))
    assert results[0] == results[1]
    assert results[0][0] != 0 and "pyhv-worker: error: " in results[0][1]


def test_start_worker_reports_the_forked_workers_error(
    forkserver: ForkServer,
    paths: HomePaths,
    vm: VmConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "qemu-system-x86_64").write_text("#!/bin/sh\necho 'bad option' >&2\nexit 1\n")
    (bin_dir / "qemu-system-x86_64").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(PyhvError, match="QEMU failed to start: bad option"):
        start_worker(paths, vm, restore=False, spawner=forkserver)


def test_a_dead_fork_server_falls_back_to_a_fresh_worker(
    forkserver: ForkServer, paths: HomePaths, tmp_path: Path
) -> None:
    forkserver.close()
    log = tmp_path / "worker.log"
    proc = forkserver.spawn(worker_args(paths, "no-such-vm", restore=False), {**os.environ}, log)
    assert wait_exit(proc) != 0
    assert "pyhv-worker: error: " in tail_line(log)
