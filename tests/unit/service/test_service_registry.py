"""What pyhvd writes for a VM no worker runs for."""

from pathlib import Path

import pytest

from pyhv.model import VmState
from pyhv.paths import HomePaths
from pyhv.saved_state_file import saved_paused
from pyhv.service.registry import adopt_saved_state, discard_saved_state
from pyhv.worker.status_file import current_status

VM = "0b8f7a4e-5d4c-4a1e-9f53-8a9a3b7c1d2e"


@pytest.mark.parametrize("keep_source", [True, False])
def test_an_adopted_saved_state_makes_the_vm_saved(tmp_path: Path, keep_source: bool) -> None:
    paths = HomePaths(tmp_path / "home")
    paths.vm_dir(VM).mkdir(parents=True)
    memory = tmp_path / "export" / "memory.bin"
    memory.parent.mkdir()
    memory.write_bytes(b"memory")
    adopt_saved_state(paths, VM, memory, paused=True, keep_source=keep_source)
    assert paths.vm_saved_state(VM).read_bytes() == b"memory"
    assert memory.exists() == keep_source  # a registered export keeps its files
    assert saved_paused(paths.vm_saved_state_info(VM))
    status = current_status(paths, VM)
    assert (status.state, status.reason) == (VmState.SAVED, "imported with its saved state")
    discard_saved_state(paths, VM)
    assert not paths.vm_saved_state(VM).exists()
    assert not paths.vm_saved_state_info(VM).exists()
    assert current_status(paths, VM).state == VmState.OFF
