from __future__ import annotations

import pytest

from pyhv.guestkit import modules

# The real dependencies of Debian 6.1 cloud kernel modules, as their .modinfo says.
DEPENDS = {
    "virtio_ring": [],
    "virtio": [],
    "virtio_pci_legacy_dev": [],
    "virtio_pci_modern_dev": [],
    "virtio_pci": ["virtio_pci_modern_dev", "virtio_ring", "virtio", "virtio_pci_legacy_dev"],
    "scsi_common": [],
    "scsi_mod": ["scsi_common"],
    "cdrom": [],
    "sr_mod": ["scsi_mod", "cdrom", "scsi_common"],
    "sd_mod": ["scsi_mod", "scsi_common"],
    "virtio_scsi": ["scsi_mod", "virtio", "virtio_ring"],
}


def test_each_module_comes_after_its_dependencies() -> None:
    order = modules.load_order(["virtio_pci", "sd_mod", "sr_mod", "virtio_scsi"], DEPENDS)
    assert sorted(order) == sorted(DEPENDS)
    for name, deps in DEPENDS.items():
        assert all(order.index(d) < order.index(name) for d in deps), name


def test_wanted_order_is_kept_where_dependencies_allow() -> None:
    order = modules.load_order(["sd_mod", "virtio_scsi"], DEPENDS)
    assert order.index("sd_mod") < order.index("virtio_scsi")


def test_builtin_modules_are_not_loaded() -> None:
    order = modules.load_order(["sd_mod"], {"sd_mod": ["scsi_mod"]}, builtin=["scsi_mod"])
    assert order == ["sd_mod"]


def test_dashes_and_underscores_are_the_same_module() -> None:
    assert modules.load_order(["virtio-pci"], {"virtio_pci": []}) == ["virtio_pci"]


def test_missing_module_names_who_needs_it() -> None:
    with pytest.raises(modules.ModuleError, match=r"scsi_mod \(needed by sd_mod\)"):
        modules.load_order(["sd_mod"], {"sd_mod": ["scsi_mod"]})


def test_cycle_is_reported() -> None:
    with pytest.raises(modules.ModuleError, match="a -> b -> a"):
        modules.load_order(["a"], {"a": ["b"], "b": ["a"]})


def test_parse_modinfo_reads_depends() -> None:
    info = modules.parse_modinfo(b"license=GPL\0depends=scsi_mod,cdrom\0name=sr_mod\0")
    assert modules.dependencies(info) == ["scsi_mod", "cdrom"]
    assert modules.dependencies(modules.parse_modinfo(b"depends=\0")) == []
