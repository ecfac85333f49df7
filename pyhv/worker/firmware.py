"""Finding the firmware a VM generation boots with: SeaBIOS (generation 1) or OVMF without
secure boot (generation 2), whose variable store each VM gets its own copy of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyhv.atomicfile import write_atomic
from pyhv.errors import NotFoundError

SEABIOS_CANDIDATES = (
    Path("/usr/share/seabios/bios-256k.bin"),
    Path("/usr/share/qemu/bios-256k.bin"),
)
# (code, variable store template); the plain builds, not .secboot/.ms, keep secure boot off.
OVMF_CANDIDATES = (
    (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    (Path("/usr/share/OVMF/OVMF_CODE.fd"), Path("/usr/share/OVMF/OVMF_VARS.fd")),
    (Path("/usr/share/edk2/ovmf/OVMF_CODE.fd"), Path("/usr/share/edk2/ovmf/OVMF_VARS.fd")),
)


@dataclass(frozen=True)
class Firmware:
    """What QEMU loads: ``bios`` for generation 1, ``code`` + the VM's ``vars`` for 2."""

    bios: Path | None = None
    code: Path | None = None
    vars: Path | None = None


def find_seabios(exists: Callable[[Path], bool] = Path.is_file) -> Path | None:
    return next((p for p in SEABIOS_CANDIDATES if exists(p)), None)


def find_ovmf(exists: Callable[[Path], bool] = Path.is_file) -> tuple[Path, Path] | None:
    """The first OVMF code + variable template pair that is complete."""
    return next(((c, v) for c, v in OVMF_CANDIDATES if exists(c) and exists(v)), None)


def firmware_for(generation: int, vars_path: Path) -> Firmware:
    """The firmware of a VM; for generation 2 the variable store at ``vars_path`` is created
    from the template on first use and kept afterwards (it holds the boot entries).

    :raises NotFoundError: when the firmware package is missing.
    """
    if generation == 1:
        bios = find_seabios()
        if bios is None:
            raise NotFoundError("SeaBIOS (bios-256k.bin) not found: install the seabios package")
        return Firmware(bios=bios)
    ovmf = find_ovmf()
    if ovmf is None:
        raise NotFoundError("OVMF (UEFI firmware) not found: install the ovmf package")
    code, template = ovmf
    if not vars_path.exists():
        vars_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(vars_path, template.read_bytes())
    return Firmware(code=code, vars=vars_path)
