"""`pyhv checkpoint …` end to end on an Off VM: output, prompts refused without a terminal,
errors as one line with the right exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VM = "cpvm"


def pyhv(off_vm: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYHV_HOME": str(off_vm.home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "pyhv.cli", "checkpoint", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_cli_round(off_vm: Any, tmp_path: Path) -> None:
    off_vm.write("A")
    assert pyhv(off_vm, "new", VM, "--name", "c1").returncode == 0
    at_c1 = off_vm.state()
    off_vm.write("B")
    assert pyhv(off_vm, "new", VM, "--type", "production").returncode == 0
    listed = pyhv(off_vm, "list", VM).stdout.splitlines()
    assert listed[0] == "c1" and listed[1].startswith("└── cpvm - (") and listed[2] == "    └── Now"

    shown = pyhv(off_vm, "show", VM, "c1").stdout
    assert "standard" in shown and "sys.vhdx" in shown and "data.vhd" in shown

    refused = pyhv(off_vm, "apply", VM, "c1")
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith("pass --yes or --checkpoint-first")
    assert len(refused.stderr.strip().splitlines()) == 1

    assert pyhv(off_vm, "apply", VM, "c1", "--checkpoint-first").returncode == 0
    assert off_vm.state() == at_c1
    assert len(off_vm.manager.tree(VM)[1].checkpoints) == 3

    assert pyhv(off_vm, "rename", VM, "c1", "base").returncode == 0
    missing = pyhv(off_vm, "show", VM, "c1")
    assert missing.returncode == 2 and "its checkpoints: 'base'" in missing.stderr
    assert pyhv(off_vm, "export", VM, "base", str(tmp_path / "out")).returncode == 0
    assert (tmp_path / "out" / "checkpoint.json").exists()

    assert pyhv(off_vm, "remove", VM, "base", "--subtree").returncode == 0
    assert pyhv(off_vm, "list", VM).stdout.strip() == f"VM '{VM}' has no checkpoints"
    assert off_vm.files() == off_vm.bases
    off_vm.check()
