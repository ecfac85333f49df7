"""``pyhv vm …`` as a user runs it, through a real pyhvd on a temporary home: one guest boot
for create, start (to the ready line), exec, console, save and start from Saved, shut down and
remove; and the one line the CLI prints when pyhvd is not running."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyhvd_harness import Pyhvd, PyhvdFactory, make_home

from pyhv.errors import NotFoundError, StateError, UsageError
from pyhv.guestkit import READY_LINE, KitPaths
from pyhv.model import VmConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PYHV = str(Path(sys.executable).with_name("pyhv"))
BOOT_TIMEOUT_S = 240.0
COMMAND_TIMEOUT_S = 300.0


def kit() -> KitPaths:
    from pyhv.guestkit import kit_paths

    try:
        return kit_paths()
    except NotFoundError as err:
        pytest.skip(str(err))


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYHV, *args], env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )


def test_cli_says_how_to_start_pyhvd() -> None:
    home = make_home()
    try:
        env = dict(os.environ, PYHV_HOME=str(home))
        env.pop("PYHV_RUN_DIR", None)
        result = run(env, "vm", "list")
        assert result.returncode == 1
        assert result.stderr == (
            f"pyhv: error: pyhvd is not running (nothing answers at {home}/run/pyhvd.sock): "
            f"start it with `pyhvd --home {home} &` or `systemctl start pyhvd`\n"
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_console_and_power_parameters_without_a_guest(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(VmConfig(name="idle", memory_startup_mib=64, boot_order=[]))
    assert c.console_log("idle") == b""
    with (
        pytest.raises(StateError, match="cannot attach to the console of VM 'idle': it is Off"),
        c.console("idle"),
    ):
        pass
    with pytest.raises(NotFoundError), c.console("nobody"):
        pass
    with pytest.raises(UsageError, match="ready_timeout_s applies to start only, not to stop"):
        c.power("idle", "stop", ready_timeout_s=5)
    env = dict(pyhvd.env)
    console = run(env, "vm", "console", "idle")
    assert (console.returncode, console.stderr.count("\n")) == (1, 1), console.stderr
    stop = run(env, "vm", "stop", "idle", "--save", "--turn-off")
    assert stop.returncode == 2


def wait_for_agent(env: dict[str, str], vm: str) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while run(env, "vm", "exec", vm, "--timeout", "10", "--", "true").returncode != 0:
        assert time.monotonic() < deadline, "the guest agent never answered"
        time.sleep(1)


def console_roundtrip(env: dict[str, str], vm: str) -> str:
    """Type a command on the serial console through pyhvd's websocket; what came back."""
    proc = subprocess.Popen(
        [PYHV, "vm", "console", vm],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    seen = b""
    try:
        deadline = time.monotonic() + 60
        proc.stdin.write(b"\necho con$((40+2))\n")
        proc.stdin.flush()
        while b"con42" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                seen += os.read(proc.stdout.fileno(), 65536)
        proc.stdin.write(b"\x1d")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return seen.decode(errors="replace")


def test_vm_life_through_the_cli(pyhvd_factory: PyhvdFactory) -> None:
    paths = kit()
    d: Pyhvd = pyhvd_factory(extra_env={"PYHV_STORAGE_ROOTS": str(paths.kernel.parent)})
    disk = d.home / "disks" / "root.vhdx"
    shutil.copyfile(paths.rootdisk, disk)
    d.start()
    env = d.env
    new = ["vm", "new", "g", "--memory", "512M", "--kernel", str(paths.kernel)]
    new += ["--initrd", str(paths.initrd), "--cmdline", paths.cmdline, "--disk", str(disk)]

    created = run(env, *new)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created VM 'g' (")
    again = run(env, *new)
    assert again.returncode == 2
    assert again.stderr.startswith("pyhv: error: a VM named 'g' already exists")
    too_big = run(env, "vm", "new", "big", "--cpus", "9999")
    assert too_big.returncode == 2 and too_big.stderr.count("\n") == 1, too_big.stderr
    off = run(env, "vm", "pause", "g")
    assert (off.returncode, off.stderr) == (1, "pyhv: error: cannot pause VM 'g': it is Off\n")

    started = run(env, "vm", "start", "g", "--wait-ready", "--timeout", str(BOOT_TIMEOUT_S))
    assert started.returncode == 0, started.stderr
    assert started.stdout == "VM 'g' is Running\n"
    wait_for_agent(env, "g")
    result = run(env, "vm", "exec", "g", "--", "sh", "-c", "uname -s; echo oops >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "Linux\n", "oops\n")
    # Output far above asyncio's 64 KiB line limit broke the agent channel, for good.
    script = "head -c 5000000 /dev/urandom | base64"
    big = run(env, "vm", "exec", "g", "--", "sh", "-c", script)
    assert big.returncode == 0, big.stderr
    assert len(base64.b64decode(big.stdout)) == 5000000
    # Renamed while running, the worker kept the old name in its messages.
    assert run(env, "vm", "set", "g", "--new-name", "g2").returncode == 0
    assert run(env, "vm", "pause", "g2").returncode == 0
    paused = run(env, "vm", "exec", "g2", "--", "true")
    assert paused.stderr == "pyhv: error: cannot run a command in VM 'g2': it is Paused\n"
    assert run(env, "vm", "resume", "g2").returncode == 0
    assert run(env, "vm", "set", "g2", "--new-name", "g").returncode == 0
    listed = json.loads(run(env, "vm", "list", "--json").stdout)
    assert [(v["name"], v["state"]) for v in listed] == [("g", "Running")]
    assert listed[0]["stats"]["memory_assigned_mib"] == 512
    assert "Running" in run(env, "vm", "show", "g").stdout
    assert READY_LINE in run(env, "vm", "console", "g", "--log").stdout
    assert "con42" in console_roundtrip(env, "g")

    # Save-VM, then Start-VM from Saved: the guest's RAM (its tmpfs) survives.
    assert run(env, "vm", "exec", "g", "--", "sh", "-c", "echo kept > /tmp/marker").returncode == 0
    saved = run(env, "vm", "stop", "g", "--save")
    assert (saved.returncode, saved.stdout) == (0, "VM 'g' is Saved\n"), saved.stderr
    restored = run(env, "vm", "start", "g")
    assert (restored.returncode, restored.stdout) == (0, "VM 'g' is Running\n"), restored.stderr
    assert run(env, "vm", "exec", "g", "--", "cat", "/tmp/marker").stdout == "kept\n"

    stopped = run(env, "vm", "stop", "g", "--timeout", "120")
    assert stopped.stdout == "VM 'g' is Off (guest shut down)\n", stopped.stderr
    refused = run(env, "vm", "exec", "g", "--", "true")
    assert refused.returncode == 1 and "it is Off" in refused.stderr
    removed = run(env, "vm", "remove", "g")
    assert removed.stdout == "removed VM 'g'; its disks were kept\n"
    assert disk.exists()
    gone = run(env, "vm", "show", "g")
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1
