"""The host check on this machine, with real QEMU test guests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyhv.host.accel import choose_accelerator
from pyhv.host.probe import run_probe
from pyhv.host.qemu import find_qemu

pytestmark = pytest.mark.integration

PVM = Path("/sys/module/kvm_pvm").exists()


def pyhv(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyhv.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYHV_ACCEL"} | env,
    )


def test_tcg_test_guest_exits_with_the_expected_status() -> None:
    qemu = find_qemu()
    assert qemu is not None
    result = run_probe(qemu, "tcg", timeout=120)
    assert result.ok, result.detail


def test_host_check_json() -> None:
    done = pyhv("host", "check", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert report["can_run_vms"] is True
    assert report["qemu"]["version"].startswith("7.")
    assert report["qemu"]["tcg_probe"]["ok"] is True
    assert report["firmware"]["seabios"]
    assert report["vm_limits"]["max_processors"] == len(os.sched_getaffinity(0))
    if PVM:
        assert report["accelerator"] == {
            "name": "tcg",
            "reason": "/dev/kvm is provided by kvm_pvm, not hardware virtualization",
        }
        assert report["kvm"]["probe"] is None or report["kvm"]["probe"]["ok"] is False


def test_text_output_and_override() -> None:
    done = pyhv("host", "check", PYHV_ACCEL="tcg")
    assert done.returncode == 0, done.stderr
    assert "tcg: forced by PYHV_ACCEL=tcg" in " ".join(done.stdout.split())


@pytest.mark.skipif(not PVM, reason="only meaningful where /dev/kvm is kvm_pvm")
def test_pvm_is_not_trusted() -> None:
    choose_accelerator.cache_clear()
    if os.environ.get("PYHV_ACCEL"):
        pytest.skip("PYHV_ACCEL overrides the decision")
    assert choose_accelerator().name == "tcg"
