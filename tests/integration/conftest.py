"""Real guests for integration tests: the guest kit, a short PYHV_HOME, a way to make VMs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from pyhv.errors import PyhvError
from pyhv.guestkit import KitPaths, build_kit
from pyhv.model import DiskAttachment, KernelBoot, ScsiController, VmState, make_vm_config
from pyhv.paths import HomePaths
from pyhv.worker.local import LocalHost

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent / "service"))

from pyhvd_harness import Pyhvd

PYHV = str(Path(sys.executable).with_name("pyhv"))
BOOT_TIMEOUT_S = 180.0


@pytest.fixture(scope="session")
def kit() -> KitPaths:
    try:
        return build_kit()
    except (PyhvError, OSError) as e:
        pytest.skip(f"the guest kit cannot be built here: {e}")


@pytest.fixture(scope="module")
def host() -> Iterator[LocalHost]:
    """A fresh PYHV_HOME per module, short enough for unix socket paths; every VM still
    running at the end is turned off so no QEMU outlives the tests."""
    home = Path(tempfile.mkdtemp(prefix="pyhv", dir="/tmp"))
    local = LocalHost(HomePaths(home, run_root=home / "run"))
    yield local
    for config in local.inventory.list():
        if local.status(config).state not in (VmState.OFF, VmState.SAVED):
            local.turn_off(config.name)
    shutil.rmtree(home, ignore_errors=True)


MakeVm = Callable[..., str]


@pytest.fixture(scope="module")
def make_vm(host: LocalHost, kit: KitPaths) -> MakeVm:
    """Create a VM booting the kit with its root on a private copy of the kit's VHDX."""

    def make(name: str, generation: int = 1, **config_fields: object) -> str:
        disk = host.paths.home / f"{name}.vhdx"
        shutil.copyfile(kit.rootdisk, disk)
        fields = {
            "name": name,
            "generation": generation,
            "processor_count": 1,
            "memory_startup_mib": 512,
            "kernel": KernelBoot(kernel=kit.kernel, initrd=kit.initrd, cmdline=kit.cmdline),
            "scsi_controllers": [ScsiController(disks=[DiskAttachment(slot=0, path=disk)])],
        }
        config = make_vm_config(**(fields | config_fields))
        return host.inventory.create(config).name

    return make


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def host_pyhvd(host: LocalHost) -> Iterator[Pyhvd]:
    """pyhvd serving the test's home, as ``pyhv vm`` needs; it takes in the VMs that the tests
    drive through LocalHost as it would VMs left running by an earlier pyhvd."""
    env = dict(os.environ, PYHV_HOME=str(host.paths.home), PYHV_RUN_DIR=str(host.paths.run_root))
    d = Pyhvd(host.paths.home, env)
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def cli(host_pyhvd: Pyhvd) -> Cli:
    """Run the real ``pyhv`` command against the test's home, through its pyhvd."""
    env = host_pyhvd.env

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYHV, *args], env=env, capture_output=True, text=True, timeout=BOOT_TIMEOUT_S
        )

    return run


Shell = Callable[[str, str], str]


@pytest.fixture(scope="module")
def shell(host: LocalHost) -> Shell:
    """``shell(vm, script)``: the script's output inside the guest; it must succeed."""

    def run(name: str, script: str) -> str:
        result = host.exec(name, ["sh", "-c", script])
        assert result.exit_code == 0, result.stderr
        return result.stdout.decode()

    return run


@pytest.fixture(scope="session")
def wait_gone() -> Callable[..., bool]:
    """True once a pid no longer runs (a zombie waiting for its reaper counts as gone)."""

    def wait(pid: int, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            time.sleep(0.1)
        return False

    return wait
