from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_path_before_any_build_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PYHV_GUESTKIT_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pyhv.cli", "guest-kit", "path", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "pyhv guest-kit build" in proc.stderr
