from pathlib import Path

import pytest

from pyhv.errors import ConfigError
from pyhv.paths import HomePaths, RuntimeLayout, check_socket_path, pyhv_home

VM = "0b8f7a4e-5d4c-4a1e-9f53-8a9a3b7c1d2e"


def test_home_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYHV_HOME", str(tmp_path))
    assert pyhv_home() == tmp_path
    monkeypatch.delenv("PYHV_HOME")
    assert pyhv_home() == Path("/var/lib/pyhv")


def test_layout_matches_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYHV_RUN_DIR", raising=False)
    p = HomePaths(Path("/h"))
    assert p.vm_config(VM) == Path(f"/h/vms/{VM}/vm.json")
    assert p.vm_status(VM) == Path(f"/h/vms/{VM}/status.json")
    assert p.vm_saved_state(VM) == Path(f"/h/vms/{VM}/state/memory.bin")
    assert p.vm_console_log(VM) == Path(f"/h/logs/{VM}/console.log")
    run = p.runtime(VM)
    assert run.run_dir == p.run_dir(VM) == Path(f"/h/run/{VM}")
    assert [s.name for s in run.sockets()] == [
        "qmp.sock",
        "control.sock",
        "serial.sock",
        "qga.sock",
        "nbd.sock",
    ]
    assert run.worker_pid == Path(f"/h/run/{VM}/worker.pid")


def test_run_dir_can_move(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYHV_RUN_DIR", "/r")
    assert HomePaths(Path("/h")).run_dir(VM) == Path(f"/r/{VM}")
    assert HomePaths(Path("/h"), run_root=Path("/x")).run_dir(VM) == Path(f"/x/{VM}")


def test_socket_path_limit() -> None:
    assert check_socket_path(Path("/" + "a" * 106)) == Path("/" + "a" * 106)
    with pytest.raises(ConfigError, match="108 bytes, over the unix limit of 107"):
        check_socket_path(Path("/" + "a" * 107))
    deep = Path("/" + "d" * 80)
    with pytest.raises(ConfigError, match="PYHV_RUN_DIR"):
        HomePaths(deep, run_root=deep).runtime(VM)
    assert RuntimeLayout(Path("/run/x")).checked().qmp == Path("/run/x/qmp.sock")
