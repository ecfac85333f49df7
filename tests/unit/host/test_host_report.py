from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pyhv.cli import host as host_cli
from pyhv.cli.app import app as pyhv_app
from pyhv.host.accel import AccelChoice
from pyhv.host.check import (
    CpuReport,
    FirmwareReport,
    HostReport,
    KvmReport,
    NetworkReport,
    QemuReport,
    VmLimitsReport,
    assess,
)
from pyhv.host.probe import ProbeResult
from pyhv.host.system import CgroupInfo

TCG = AccelChoice(name="tcg", reason="/dev/kvm is provided by kvm_pvm")
OK_PROBE = ProbeResult(accel="tcg", ok=True, detail="test guest ran under tcg", seconds=0.1)
QEMU = QemuReport(binary="/usr/bin/qemu-system-x86_64", version="7.2.22", tcg_probe=OK_PROBE)
FW = FirmwareReport(seabios="/bios.bin", ovmf_code="/code.fd", ovmf_vars="/vars.fd")
CG = CgroupInfo(version="v2", v2_mount="/sys/fs/cgroup", controllers=["cpu", "memory"])
NET = NetworkReport(bridge="loaded", tun="ok")


def report(**changes: Any) -> HostReport:
    parts: dict[str, Any] = {"qemu": QEMU, "firmware": FW, "cgroups": CG, "network": NET}
    parts |= changes
    problems, warnings = assess(accelerator=TCG, **parts)
    return HostReport(
        kernel="6.1",
        vm_limits=VmLimitsReport(max_processors=2, max_memory_mib=24105),
        cpu=CpuReport(
            vendor="AuthenticAMD", model="EPYC", logical_cpus=2, virtualization_flag=None
        ),
        kvm=KvmReport(device="ok", modules=["kvm", "kvm_pvm"], probe=None),
        accelerator=TCG,
        problems=problems,
        warnings=warnings,
        **parts,
    )


def test_healthy_tcg_host_can_run_vms_with_a_warning() -> None:
    r = report()
    assert r.can_run_vms
    assert r.warnings == [
        "VMs run under TCG software emulation (slower): /dev/kvm is provided by kvm_pvm"
    ]
    assert '"can_run_vms":true' in r.model_dump_json()


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"qemu": QemuReport(binary=None, version=None, tcg_probe=None)},
            "install the qemu-system-x86",
        ),
        (
            {
                "qemu": QEMU.model_copy(
                    update={"tcg_probe": OK_PROBE.model_copy(update={"ok": False})}
                )
            },
            "QEMU cannot run a guest",
        ),
        (
            {"firmware": FirmwareReport(seabios=None, ovmf_code=None, ovmf_vars=None)},
            "no firmware",
        ),
    ],
)
def test_problems(changes: dict[str, Any], problem: str) -> None:
    r = report(**changes)
    assert not r.can_run_vms
    assert problem in r.problems[0]


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        ({"firmware": FW.model_copy(update={"ovmf_code": None})}, "generation 2 VMs cannot start"),
        ({"firmware": FW.model_copy(update={"seabios": None})}, "generation 1 VMs cannot start"),
        ({"cgroups": CG.model_copy(update={"controllers": ["cpu"]})}, "controllers memory missing"),
        ({"network": NetworkReport(bridge="missing", tun="ok")}, "virtual switches unavailable"),
        ({"network": NetworkReport(bridge="loaded", tun="missing")}, "/dev/net/tun is missing"),
    ],
)
def test_warnings(changes: dict[str, Any], warning: str) -> None:
    r = report(**changes)
    assert r.can_run_vms
    assert any(warning in w for w in r.warnings)


def test_rows_and_text() -> None:
    rows = {name: (result, passed) for name, result, passed in host_cli.report_rows(report())}
    assert rows["Virtualization extensions"] == ("none (no vmx or svm flag)", False)
    assert rows["KVM test guest"] == ("not run", None)
    assert rows["QEMU"] == ("/usr/bin/qemu-system-x86_64 7.2.22", True)
    assert rows["Accelerator"][0] == "tcg: /dev/kvm is provided by kvm_pvm"
    assert rows["VM limits"][0] == "2 processors, 23.5 GiB of memory per VM"
    console = Console(record=True, width=200)
    host_cli.show_report(report(), console)
    assert "This host can run VMs, with tcg." in console.export_text()


@pytest.mark.parametrize(
    ("changes", "code"),
    [({}, 0), ({"firmware": FirmwareReport(seabios=None, ovmf_code=None, ovmf_vars=None)}, 1)],
)
def test_cli_exit_code_and_json(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any], code: int
) -> None:
    monkeypatch.setattr(host_cli, "check_host", lambda: report(**changes))
    result = CliRunner().invoke(pyhv_app, ["host", "check", "--json"])
    assert result.exit_code == code
    assert HostReport.model_validate_json(result.stdout).accelerator == TCG
