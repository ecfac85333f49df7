from pathlib import Path
from typing import Any

import pytest

from pyhv.model import VmConfig, make_vm_config
from pyhv.paths import RuntimeLayout
from pyhv.worker.firmware import Firmware
from pyhv.worker.qemu_argv import (
    DiskWiring,
    boot_indexes,
    build_qemu_argv,
    plan_disk,
    render,
)

VM_ID = "0b8f7a4e-5d4c-4a1e-9f53-8a9a3b7c1d2e"
RUN = RuntimeLayout(Path("/run/pyhv/vm"))
SEABIOS = Firmware(bios=Path("/usr/share/seabios/bios-256k.bin"))
OVMF = Firmware(code=Path("/fw/OVMF_CODE_4M.fd"), vars=Path("/vms/x/efi-vars.fd"))


def config(**fields: Any) -> VmConfig:
    return make_vm_config(**{"name": "web", "id": VM_ID, **fields})


def pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


GOLDEN_GEN1 = [
    "qemu-system-x86_64",
    *("-name", "guest=web,debug-threads=on", "-uuid", VM_ID),
    *("-machine", "q35,memory-backend=mem", "-accel", "tcg", "-cpu", "max"),
    *("-smp", "2", "-m", "1024M"),
    *("-object", "memory-backend-memfd,id=mem,size=1024M,share=on"),
    *("-bios", "/usr/share/seabios/bios-256k.bin"),
    *("-nodefaults", "-no-user-config", "-display", "none"),
    *("-chardev", "socket,id=qmp,path=/run/pyhv/vm/qmp.sock,server=on,wait=off"),
    *("-mon", "chardev=qmp,mode=control"),
    *("-chardev", "socket,id=com1,path=/run/pyhv/vm/serial.sock,server=on,wait=off"),
    *("-device", "isa-serial,chardev=com1,index=0"),
    *("-device", "virtio-serial-pci,id=vserial0"),
    *("-chardev", "socket,id=qga0,path=/run/pyhv/vm/qga.sock,server=on,wait=off"),
    *("-device", "virtserialport,bus=vserial0.0,nr=1,chardev=qga0,name=org.qemu.guest_agent.0"),
    *("-device", "virtio-balloon-pci,id=balloon0"),
    *("-device", "pcie-root-port,id=hotplug0,bus=pcie.0,chassis=1"),
    *("-device", "pcie-root-port,id=hotplug1,bus=pcie.0,chassis=2"),
    *("-device", "pcie-root-port,id=hotplug2,bus=pcie.0,chassis=3"),
    *("-device", "pcie-root-port,id=hotplug3,bus=pcie.0,chassis=4"),
    *("-device", "virtio-scsi-pci,id=scsi0"),
    *("-object", "throttle-group,id=tg0-0"),
    "-blockdev",
    "driver=nbd,node-name=disk0-0-nbd,server.type=unix,server.path=/run/pyhv/vm/nbd.sock,"
    "export=root,reconnect-delay=10,read-only=off,discard=unmap",
    "-blockdev",
    "driver=throttle,node-name=disk0-0,throttle-group=tg0-0,file=disk0-0-nbd,"
    "read-only=off,discard=unmap",
    *("-device", "scsi-hd,id=hd0-0,bus=scsi0.0,scsi-id=0,lun=0,drive=disk0-0,bootindex=1"),
    *("-kernel", "/kit/vmlinuz", "-initrd", "/kit/initrd.gz"),
    *("-append", "console=ttyS0 root=/dev/sda"),
]


def test_golden_generation_1_with_kernel_and_root_disk() -> None:
    vm = config(
        processor_count=2,
        memory_startup_mib=1024,
        kernel={
            "kernel": "/kit/vmlinuz",
            "initrd": "/kit/initrd.gz",
            "cmdline": "console=ttyS0 root=/dev/sda",
        },
        scsi_controllers=[{"disks": [{"slot": 0, "path": "/kit/root.vhdx"}]}],
    )
    argv = build_qemu_argv(vm, RUN, "tcg", SEABIOS, disks=[DiskWiring(0, 0, "root")])
    assert argv == GOLDEN_GEN1


def test_generation_2_uses_ovmf_pflash() -> None:
    argv = build_qemu_argv(config(generation=2), RUN, "tcg", OVMF)
    assert pairs(argv, "-machine") == ["q35,memory-backend=mem,pflash0=fw-code,pflash1=fw-vars"]
    assert pairs(argv, "-blockdev") == [
        "driver=file,node-name=fw-code,filename=/fw/OVMF_CODE_4M.fd,read-only=on",
        "driver=file,node-name=fw-vars,filename=/vms/x/efi-vars.fd,read-only=off",
    ]
    assert "-bios" not in argv
    assert "-kernel" not in argv


def test_kvm_uses_the_host_cpu() -> None:
    argv = build_qemu_argv(config(), RUN, "kvm", SEABIOS)
    assert pairs(argv, "-accel") == ["kvm"]
    assert pairs(argv, "-cpu") == ["host"]
    with pytest.raises(ValueError, match="unknown accelerator 'hvf'"):
        build_qemu_argv(config(), RUN, "hvf", SEABIOS)


def test_restore_and_start_paused() -> None:
    argv = build_qemu_argv(config(), RUN, "tcg", SEABIOS, incoming="defer", start_paused=True)
    assert argv[-3:] == ["-S", "-incoming", "defer"]
    assert build_qemu_argv(config(), RUN, "tcg", SEABIOS) == build_qemu_argv(
        config(), RUN, "tcg", SEABIOS
    )


def test_a_memory_file_replaces_only_the_memfd() -> None:
    argv = build_qemu_argv(config(), RUN, "tcg", SEABIOS, memory_file="/proc/7/fd/9,x")
    mapped = "memory-backend-file,id=mem,size=512M,share=on,mem-path=/proc/7/fd/9,,x"
    assert pairs(argv, "-object")[0] == mapped
    fresh = build_qemu_argv(config(), RUN, "tcg", SEABIOS)
    assert [a for a in argv if a != mapped] == [a for a in fresh if not a.startswith("memory-")]


def test_qos_sets_the_limits_of_the_disks_throttle_group() -> None:
    vm = config(
        scsi_controllers=[
            {},
            {"disks": [{"slot": 7, "path": "/d", "max_iops": 500, "max_bytes_per_sec": 10**6}]},
        ]
    )
    argv = build_qemu_argv(vm, RUN, "tcg", SEABIOS, disks=[DiskWiring(1, 7, "d", read_only=True)])
    assert (
        pairs(argv, "-object")[1] == "throttle-group,id=tg1-7,x-iops-total=500,x-bps-total=1000000"
    )
    assert pairs(argv, "-blockdev") == [
        "driver=nbd,node-name=disk1-7-nbd,server.type=unix,server.path=/run/pyhv/vm/nbd.sock,"
        "export=d,reconnect-delay=10,read-only=on,discard=unmap",
        "driver=throttle,node-name=disk1-7,throttle-group=tg1-7,file=disk1-7-nbd,"
        "read-only=on,discard=unmap",
    ]
    assert "scsi-hd,id=hd1-7,bus=scsi1.0,scsi-id=7,lun=0,drive=disk1-7,bootindex=1" in pairs(
        argv, "-device"
    )
    assert pairs(argv, "-device").count("virtio-scsi-pci,id=scsi1") == 1


def test_plan_disk_gives_qmp_dicts_for_hot_add() -> None:
    plan = plan_disk(DiskWiring(2, 255, "e"), Path("/s"), bootindex=None)
    assert plan.objects == [{"qom-type": "throttle-group", "id": "tg2-255"}]
    assert plan.node == "disk2-255"
    assert plan.blockdevs[0]["server"] == {"type": "unix", "path": "/s"}
    assert plan.blockdevs[1]["file"] == "disk2-255-nbd"
    assert plan.device == {
        "driver": "scsi-hd",
        "id": "hd2-255",
        "bus": "scsi2.0",
        "scsi-id": 255,
        "lun": 0,
        "drive": "disk2-255",
    }


def test_disk_on_a_missing_controller_is_refused() -> None:
    with pytest.raises(ValueError, match="SCSI controller 3"):
        build_qemu_argv(config(), RUN, "tcg", SEABIOS, disks=[DiskWiring(3, 0, "x")])


def test_dvd_with_and_without_media() -> None:
    with_iso = build_qemu_argv(config(dvd={"path": "/iso/setup,1.iso"}), RUN, "tcg", SEABIOS)
    assert pairs(with_iso, "-blockdev") == [
        "driver=raw,node-name=dvd0-media,read-only=on,file.driver=file,"
        "file.filename=/iso/setup,,1.iso"
    ]
    assert pairs(with_iso, "-device")[-1] == (
        "scsi-cd,id=dvd0,bus=scsi0.0,scsi-id=255,lun=0,drive=dvd0-media,bootindex=1"
    )
    empty = build_qemu_argv(config(dvd={}), RUN, "tcg", SEABIOS)
    assert (
        pairs(empty, "-device")[-1] == "scsi-cd,id=dvd0,bus=scsi0.0,scsi-id=255,lun=0,bootindex=1"
    )


def test_boot_order() -> None:
    two = [{"disks": [{"slot": 3, "path": "/a"}, {"slot": 1, "path": "/b"}]}, {}]
    assert boot_indexes(config(scsi_controllers=two, dvd={})) == {"dvd0": 1, "hd0-1": 2}
    vm = config(scsi_controllers=two, dvd={}, boot_order=["disk:0:3", "dvd", "disk"])
    assert boot_indexes(vm) == {"hd0-3": 1, "dvd0": 2, "hd0-1": 3}
    assert boot_indexes(config(boot_order=["disk:1:1"])) == {}


def test_com_ports() -> None:
    vm = config(com1={"mode": "none"}, com2={"mode": "pipe", "path": "/tmp/pipe"})
    argv = build_qemu_argv(vm, RUN, "tcg", SEABIOS)
    assert "socket,id=com2,path=/tmp/pipe,server=on,wait=off" in pairs(argv, "-chardev")
    assert "isa-serial,chardev=com2,index=1" in pairs(argv, "-device")
    assert not any("com1" in a for a in argv)


def test_names_with_commas_are_escaped() -> None:
    argv = build_qemu_argv(config(name="a,b"), RUN, "tcg", SEABIOS)
    assert pairs(argv, "-name") == ["guest=a,,b,debug-threads=on"]


def test_render() -> None:
    assert render({"driver": "x", "a": {"b": True, "c": 1}}, "driver") == "x,a.b=on,a.c=1"
    assert render({"k": "v,w"}) == "k=v,,w"


def test_large_pages_put_the_memfd_on_hugetlbfs_and_a_mapped_file_keeps_its_own() -> None:
    vm = config()
    fresh = pairs(build_qemu_argv(vm, RUN, "tcg", SEABIOS, large_pages=True), "-object")[0]
    assert fresh == "memory-backend-memfd,id=mem,size=512M,share=on,hugetlb=on,hugetlbsize=2M"
    assert "hugetlb" not in pairs(build_qemu_argv(vm, RUN, "tcg", SEABIOS), "-object")[0]
    mapped = build_qemu_argv(vm, RUN, "tcg", SEABIOS, memory_file="/proc/7/fd/9", large_pages=True)
    assert pairs(mapped, "-object")[0] == (
        "memory-backend-file,id=mem,size=512M,share=on,mem-path=/proc/7/fd/9"
    )
