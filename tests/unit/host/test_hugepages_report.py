"""The huge pages in ``pyhv host check``: one reading of the counters, and a row that says how
much guest RAM may still go on them."""

from __future__ import annotations

from pathlib import Path

from pyhv.cli.host import hugepages_text, report_rows
from pyhv.host.accel import AccelChoice
from pyhv.host.check import (
    CpuReport,
    FirmwareReport,
    HostReport,
    HugePagesReport,
    KvmReport,
    NetworkReport,
    QemuReport,
    VmLimitsReport,
)
from pyhv.host.hugepages import PoolCounts, available_pages, read_pool
from pyhv.host.system import CgroupInfo


def pool(tmp_path: Path, total: int, free: int, reserved: int) -> Path:
    for field, value in (("nr", total), ("free", free), ("resv", reserved)):
        (tmp_path / f"{field}_hugepages").write_text(f"{value}\n")
    return tmp_path


def test_read_pool(tmp_path: Path) -> None:
    counts = read_pool(pool(tmp_path, 600, 300, 44))
    assert counts == PoolCounts(total=600, free=300, reserved=44)
    assert counts.available == 256 == available_pages(tmp_path)


def test_a_kernel_without_the_pool_reads_as_empty(tmp_path: Path) -> None:
    assert read_pool(tmp_path / "absent") == PoolCounts(0, 0, 0)


def test_report_in_pages_and_mib() -> None:
    report = HugePagesReport.of(PoolCounts(600, 300, 44, surplus=100, overcommit=356))
    assert report.model_dump() == {
        "total": 600,
        "free": 300,
        "reserved": 44,
        "available": 256,
        "available_mib": 512,
        "surplus": 100,
        "overcommit": 356,
        "headroom": 512,
        "headroom_mib": 1024,
    }
    assert hugepages_text(report) == (
        "1 GiB of guest RAM may go on them (256 of 600 pool pages available, 300 free, "
        "44 reserved; 256 more by overcommit, 100 of 356 in use)"
    )


def test_none_to_give_says_how_to_have_some() -> None:
    text = hugepages_text(HugePagesReport.of(PoolCounts(0, 0, 0)))
    assert text.startswith("none to give: guest RAM goes on 4 KiB pages")
    assert "vm.nr_overcommit_hugepages=N" in text and "vm.nr_hugepages=N" in text


def host_report(hugepages: HugePagesReport | None) -> HostReport:
    return HostReport(
        kernel="6.1",
        vm_limits=VmLimitsReport(max_processors=2, max_memory_mib=24105),
        cpu=CpuReport(
            vendor="AuthenticAMD", model="EPYC", logical_cpus=2, virtualization_flag=None
        ),
        kvm=KvmReport(device="missing", modules=[], probe=None),
        qemu=QemuReport(binary="/usr/bin/qemu-system-x86_64", version="7.2", tcg_probe=None),
        firmware=FirmwareReport(seabios="/bios.bin", ovmf_code=None, ovmf_vars=None),
        cgroups=CgroupInfo(version="v2", v2_mount="/sys/fs/cgroup", controllers=["cpu"]),
        network=NetworkReport(bridge="loaded", tun="ok"),
        accelerator=AccelChoice(name="tcg", reason="no /dev/kvm"),
        problems=[],
        warnings=[],
        hugepages=hugepages,
    )


def test_host_check_shows_the_pool_last() -> None:
    pool = HugePagesReport.of(PoolCounts(total=512, free=512, reserved=0))
    rows = report_rows(host_report(pool))
    assert rows[-1] == ("2 MiB huge pages", hugepages_text(pool), None)
    assert '"hugepages":{"total":512,' in host_report(pool).model_dump_json()
    assert "2 MiB huge pages" not in {name for name, _, _ in report_rows(host_report(None))}
