"""Prove an accelerator works by running a real guest: 16 bytes of hand-made real-mode
firmware that writes to QEMU's ``isa-debug-exit`` port, so QEMU exits with a known status.

A present /dev/kvm proves nothing (``kvm_pvm`` answers every ioctl yet cannot run an ordinary
guest); this probe either exits within seconds or the accelerator is not usable.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

BIOS_SIZE = 64 * 1024  # QEMU wants the -bios image in 64 KiB units; it ends at 4 GiB
RESET_VECTOR_OFFSET = BIOS_SIZE - 16  # the CPU starts at F000:FFF0
DEBUG_EXIT_PORT = 0xF4
EXIT_VALUE = 0x2A
EXPECTED_STATUS = (EXIT_VALUE << 1) | 1  # isa-debug-exit exits with (value << 1) | 1
PROBE_TIMEOUT_S = 15.0

_CODE = bytes(
    [
        0xB0, EXIT_VALUE,  # mov al, 0x2a
        0xE6, DEBUG_EXIT_PORT,  # out 0xf4, al
        0xFA,  # cli
        0xF4,  # hlt
        0xEB, 0xFD,  # jmp back to hlt
    ]
)  # fmt: skip


class ProbeResult(BaseModel):
    accel: str
    ok: bool
    detail: str
    seconds: float


def probe_firmware() -> bytes:
    image = bytearray(BIOS_SIZE)
    image[RESET_VECTOR_OFFSET : RESET_VECTOR_OFFSET + len(_CODE)] = _CODE
    return bytes(image)


def probe_argv(qemu: str, accel: str, bios: Path) -> list[str]:
    cpu = "host" if accel == "kvm" else "max"
    return [
        qemu,
        *("-machine", "q35", "-accel", accel, "-cpu", cpu, "-m", "32M"),
        *("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"),
        *("-bios", str(bios), "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=1"),
    ]


def interpret(accel: str, returncode: int | None, stderr: str, seconds: float) -> ProbeResult:
    """What a probe run means; ``returncode`` None when it was killed after the timeout."""
    if returncode == EXPECTED_STATUS:
        return ProbeResult(
            accel=accel, ok=True, detail=f"test guest ran under {accel}", seconds=seconds
        )
    if returncode is None:
        detail = f"test guest under {accel} did not finish within {PROBE_TIMEOUT_S:g} s"
    else:
        last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
        how = (
            f"was killed by {signal.Signals(-returncode).name}"
            if returncode < 0
            else f"exited with status {returncode}"
        )
        detail = f"QEMU under {accel} {how}" + (f": {last}" if last else "")
    return ProbeResult(accel=accel, ok=False, detail=detail, seconds=seconds)


def run_probe(qemu: str, accel: str, timeout: float = PROBE_TIMEOUT_S) -> ProbeResult:
    with tempfile.TemporaryDirectory(prefix="pyhv-probe-") as tmp:
        bios = Path(tmp) / "probe.bin"
        bios.write_bytes(probe_firmware())
        start = time.monotonic()
        try:
            done = subprocess.run(
                probe_argv(qemu, accel, bios),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return interpret(accel, None, "", time.monotonic() - start)
        except OSError as e:
            return ProbeResult(
                accel=accel, ok=False, detail=f"cannot run {qemu}: {e.strerror}", seconds=0.0
            )
        return interpret(accel, done.returncode, done.stderr, time.monotonic() - start)
