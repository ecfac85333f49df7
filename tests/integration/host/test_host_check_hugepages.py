"""``pyhv host check`` on this machine reports the 2 MiB huge pages the kernel can hand out."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_host_check_reports_the_pool() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pyhv.cli", "host", "check", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    pool = json.loads(done.stdout)["hugepages"]
    # Other tests may resize the pool meanwhile: the numbers must agree with each other.
    assert pool["total"] >= pool["free"] >= pool["available"] >= 0
    assert pool["available"] == pool["free"] - pool["reserved"]
    assert pool["available_mib"] == 2 * pool["available"]
    assert pool["headroom"] >= pool["available"]
    assert pool["headroom"] - pool["available"] == max(0, pool["overcommit"] - pool["surplus"])
