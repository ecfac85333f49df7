import platform
from pathlib import Path

from pyhv.host.system import bridge_state, device_state, kvm_modules, parse_cgroups

HYBRID = """tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"


def test_cgroups_hybrid_v2_and_none() -> None:
    hybrid = parse_cgroups(HYBRID, "")
    assert (hybrid.version, hybrid.v2_mount, hybrid.controllers) == (
        "hybrid",
        "/sys/fs/cgroup/unified",
        ["cpu", "memory"],
    )
    v2 = parse_cgroups(V2, "cpuset cpu io memory pids\n")
    assert (v2.version, v2.controllers) == ("v2", ["cpu", "cpuset", "io", "memory", "pids"])
    assert parse_cgroups("proc /proc proc rw 0 0\n", None).version == "none"
    v1_only = "".join(ln + "\n" for ln in HYBRID.splitlines() if "cgroup2" not in ln)
    assert parse_cgroups(v1_only, None).version == "v1"


def test_kvm_modules(tmp_path: Path) -> None:
    for name in ("kvm", "kvm_pvm", "bridge"):
        (tmp_path / name).mkdir()
    assert kvm_modules(tmp_path) == ["kvm", "kvm_pvm"]
    assert kvm_modules(tmp_path / "absent") == []


def test_bridge_state(tmp_path: Path) -> None:
    sys_module, modules = tmp_path / "sys", tmp_path / "lib"
    sys_module.mkdir()
    assert bridge_state(sys_module, modules) == "missing"
    ko = modules / platform.release() / "kernel/net/bridge/bridge.ko.xz"
    ko.parent.mkdir(parents=True)
    ko.touch()
    assert bridge_state(sys_module, modules) == "available"
    (sys_module / "bridge").mkdir()
    assert bridge_state(sys_module, modules) == "loaded"


def test_device_state(tmp_path: Path) -> None:
    assert device_state(tmp_path / "none") == "missing"
    assert device_state(Path("/dev/null")) == "ok"
    locked = tmp_path / "dir"
    locked.mkdir()
    assert device_state(locked) == "denied"  # a directory does not open read-write
