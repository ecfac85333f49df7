"""Which kernel modules the guest loads, and in which order; pure logic over ``.modinfo``.

Debian's kernel package ships no ``modules.dep`` (``depmod`` runs at install time, which the kit
never does), and busybox ``insmod`` does not resolve dependencies, so the order comes from each
module's own ``depends=`` field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyhv.errors import PyhvError

# Wanted by the guest, in the order the kit prefers when dependencies leave a choice: the disk
# and DVD drivers before the SCSI host driver, so disks found by its scan bind at once.
WANTED = (
    "virtio_pci",
    "virtio_blk",
    "sd_mod",
    "sr_mod",
    "isofs",  # to read the ISO in the DVD drive
    "virtio_scsi",
    "virtio_net",
    "virtio_console",
    "virtio_balloon",
    "button",  # ACPI power button (a module in the cloud kernel)
    "evdev",  # /dev/input/event*, which busybox acpid reads the power button from
)


class ModuleError(PyhvError):
    """A wanted module, or one it depends on, is not in the kernel package."""


def parse_modinfo(section: bytes) -> dict[str, str]:
    """The key=value pairs of a ``.modinfo`` section (later duplicates such as alias= win)."""
    info = {}
    for item in section.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            info[key] = value
    return info


def dependencies(info: Mapping[str, str]) -> list[str]:
    return [d for d in info.get("depends", "").split(",") if d]


def normalize(name: str) -> str:
    """Module names treat ``-`` and ``_`` alike; file names use either."""
    return name.replace("-", "_")


def load_order(
    wanted: Iterable[str], depends: Mapping[str, list[str]], builtin: Iterable[str] = ()
) -> list[str]:
    """Every wanted module and its dependencies, each after all it depends on.

    Built-in modules are skipped (nothing to load). Raises :class:`ModuleError` for a module
    neither available nor built in, and for a dependency cycle.
    """
    builtin_set = {normalize(b) for b in builtin}
    order: list[str] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        name = normalize(name)
        if name in done or name in builtin_set:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise ModuleError(f"kernel modules depend on each other in a cycle: {cycle}")
        if name not in depends:
            needed_by = f" (needed by {visiting[-1]})" if visiting else ""
            raise ModuleError(f"kernel module {name}{needed_by} is not in the kernel package")
        visiting.append(name)
        for dep in depends[name]:
            visit(dep)
        visiting.pop()
        done.add(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order
