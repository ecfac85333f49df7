from pyhv.host.cpu import parse_cpuinfo

BLOCK = """processor\t: {n}
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU
flags\t\t: fpu vme {extra} sse2 lm
"""


def test_intel_with_vmx() -> None:
    cpu = parse_cpuinfo("\n".join(BLOCK.format(n=n, extra="vmx") for n in range(4)))
    assert (cpu.vendor, cpu.model, cpu.logical_cpus) == ("GenuineIntel", "Intel(R) Xeon(R) CPU", 4)
    assert cpu.virtualization_flag == "vmx"


def test_amd_with_svm_and_without() -> None:
    assert parse_cpuinfo(BLOCK.format(n=0, extra="svm")).virtualization_flag == "svm"
    assert parse_cpuinfo(BLOCK.format(n=0, extra="hypervisor")).virtualization_flag is None


def test_empty() -> None:
    cpu = parse_cpuinfo("")
    assert (cpu.vendor, cpu.logical_cpus, cpu.virtualization_flag) == ("unknown", 0, None)
