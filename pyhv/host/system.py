"""Kernel facilities VMs depend on: the KVM device and modules, cgroups, bridges, taps.

Parsers take file contents and are pure; the ``read_*`` functions do the reading.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

DevState = Literal["missing", "denied", "ok"]


def device_state(path: Path) -> DevState:
    """Whether a character device exists and opens read-write for this process."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "denied"
    os.close(fd)
    return "ok"


def kvm_modules(sys_module: Path = Path("/sys/module")) -> list[str]:
    """Loaded (or built-in) modules named kvm*: ``kvm_intel``, ``kvm_amd``, ``kvm_pvm``…"""
    if not sys_module.is_dir():
        return []
    return sorted(p.name for p in sys_module.iterdir() if p.name.startswith("kvm"))


class CgroupInfo(BaseModel):
    version: Literal["v1", "v2", "hybrid", "none"]
    v2_mount: str | None = None
    controllers: list[str]


_V1_NOT_CONTROLLERS = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec"}


def parse_cgroups(mounts: str, v2_controllers: str | None) -> CgroupInfo:
    """From /proc/self/mounts and the v2 root's ``cgroup.controllers`` (None when absent)."""
    v1: set[str] = set()
    v2_mount = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        fstype, where, options = fields[2], fields[1], fields[3]
        if fstype == "cgroup2":
            v2_mount = where
        elif fstype == "cgroup":
            v1 |= {o for o in options.split(",") if o not in _V1_NOT_CONTROLLERS and "=" not in o}
    v2 = set(v2_controllers.split()) if v2_controllers else set()
    if v1 and v2_mount:
        version: Literal["v1", "v2", "hybrid", "none"] = "hybrid"
    elif v1:
        version = "v1"
    elif v2_mount:
        version = "v2"
    else:
        version = "none"
    return CgroupInfo(version=version, v2_mount=v2_mount, controllers=sorted(v1 | v2))


def read_cgroups() -> CgroupInfo:
    mounts = Path("/proc/self/mounts").read_text()
    probe = parse_cgroups(mounts, None)
    controllers = None
    if probe.v2_mount is not None:
        path = Path(probe.v2_mount) / "cgroup.controllers"
        controllers = path.read_text() if path.exists() else None
    return parse_cgroups(mounts, controllers)


BridgeState = Literal["loaded", "available", "missing"]


def bridge_state(
    sys_module: Path = Path("/sys/module"), modules_root: Path = Path("/lib/modules")
) -> BridgeState:
    """``loaded`` when the bridge module is in the kernel, ``available`` when it can be
    loaded, else ``missing``."""
    if (sys_module / "bridge").is_dir():
        return "loaded"
    release = modules_root / platform.release()
    builtin = release / "modules.builtin"
    if builtin.exists() and "/bridge.ko" in builtin.read_text():
        return "loaded"
    if any(release.glob("kernel/net/bridge/bridge.ko*")):
        return "available"
    return "missing"
