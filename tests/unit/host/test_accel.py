import pytest

from pyhv.errors import ConfigError
from pyhv.host.accel import AccelFacts, decide
from pyhv.host.probe import ProbeResult

GOOD = AccelFacts(cpu_virt_flag="vmx", dev_kvm="ok", modules=("kvm", "kvm_intel"))
PASSED = ProbeResult(accel="kvm", ok=True, detail="test guest ran under kvm", seconds=0.1)
FAILED = ProbeResult(accel="kvm", ok=False, detail="no exit within 15 s", seconds=15)


def never() -> ProbeResult:
    raise AssertionError("the probe must not run when the static checks fail")


def test_hardware_kvm_that_runs_a_guest() -> None:
    choice = decide(GOOD, lambda: PASSED)
    assert choice.name == "kvm"
    assert "vmx, kvm_intel" in choice.reason


def test_probe_failure_falls_back_to_tcg() -> None:
    choice = decide(GOOD, lambda: FAILED)
    assert (choice.name, choice.reason) == ("tcg", "a KVM test guest failed: no exit within 15 s")


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (
            AccelFacts(cpu_virt_flag=None, dev_kvm="ok", modules=("kvm", "kvm_pvm")),
            "/dev/kvm is provided by kvm_pvm, not hardware virtualization",
        ),
        (
            AccelFacts(cpu_virt_flag="svm", dev_kvm="ok", modules=("kvm", "kvm_amd", "kvm_pvm")),
            "/dev/kvm is provided by kvm_pvm",
        ),
        (
            AccelFacts(cpu_virt_flag=None, dev_kvm="missing", modules=()),
            "the CPU shows no vmx or svm flag",
        ),
        (AccelFacts(cpu_virt_flag="svm", dev_kvm="missing", modules=()), "/dev/kvm is missing"),
        (
            AccelFacts(cpu_virt_flag="svm", dev_kvm="denied", modules=("kvm", "kvm_amd")),
            "/dev/kvm cannot be opened",
        ),
        (
            AccelFacts(cpu_virt_flag="vmx", dev_kvm="ok", modules=("kvm",)),
            "not provided by kvm_intel or kvm_amd",
        ),
    ],
)
def test_tcg_without_probing(facts: AccelFacts, reason: str) -> None:
    choice = decide(facts, never)
    assert choice.name == "tcg"
    assert reason in choice.reason


def test_override() -> None:
    assert decide(GOOD, never, "tcg").reason == "forced by PYHV_ACCEL=tcg"
    assert decide(AccelFacts(None, "missing", ()), never, "kvm").name == "kvm"
    with pytest.raises(ConfigError, match="PYHV_ACCEL='xen' is not valid"):
        decide(GOOD, never, "xen")
