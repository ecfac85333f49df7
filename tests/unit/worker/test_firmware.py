from pathlib import Path

import pytest

from pyhv.errors import NotFoundError
from pyhv.worker import firmware
from pyhv.worker.firmware import OVMF_CANDIDATES, find_ovmf, find_seabios, firmware_for


def test_find_prefers_the_first_complete_candidate() -> None:
    present = {OVMF_CANDIDATES[0][0], *OVMF_CANDIDATES[1]}
    assert find_ovmf(lambda p: p in present) == OVMF_CANDIDATES[1]
    assert find_ovmf(lambda p: False) is None
    assert find_seabios(lambda p: p.name == "bios-256k.bin") == Path(
        "/usr/share/seabios/bios-256k.bin"
    )


def test_generation_2_copies_the_variable_store_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, template = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    code.write_bytes(b"code")
    template.write_bytes(b"template")
    monkeypatch.setattr(firmware, "OVMF_CANDIDATES", ((code, template),))
    vars_path = tmp_path / "vm" / "efi-vars.fd"
    fw = firmware_for(2, vars_path)
    assert (fw.code, fw.vars, fw.bios) == (code, vars_path, None)
    assert vars_path.read_bytes() == b"template"
    vars_path.write_bytes(b"boot entries")
    firmware_for(2, vars_path)
    assert vars_path.read_bytes() == b"boot entries"


def test_missing_firmware_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firmware, "SEABIOS_CANDIDATES", ())
    monkeypatch.setattr(firmware, "OVMF_CANDIDATES", ())
    with pytest.raises(NotFoundError, match="install the seabios package"):
        firmware_for(1, Path("/nonexistent"))
    with pytest.raises(NotFoundError, match="install the ovmf package"):
        firmware_for(2, Path("/nonexistent"))
