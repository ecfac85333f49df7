"""Convert the same disks with pyhv and with qemu-img in one run and print the time ratios.

Inputs (built once in a temporary folder): a 512 MiB dynamic VHDX half filled with random data
(every other 16 MiB), and the same content as a raw file. Cases: VHDX → raw, raw → dynamic
VHDX, raw → fixed VHD. Each tool converts each case ``ROUNDS`` times; the best time counts.
pyhv is timed as users run it (``pyhv vhd convert``, a fresh Python process) and, for
reference, as a library call. Goal: pyhv / qemu-img ≤ 1.0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pyhv.storage import DiskType
from pyhv.storage.operations import convert_image

MiB = 1 << 20
SIZE = 512 * MiB
ROUNDS = 3

CASES = [
    # (name, source, target name, qemu-img output options, pyhv convert options)
    ("vhdx dynamic -> raw", "src.vhdx", "out.img", ["-O", "raw"], []),
    (
        "raw -> vhdx dynamic",
        "src.img",
        "out.vhdx",
        ["-O", "vhdx", "-o", "subformat=dynamic"],
        ["--dynamic"],
    ),
    (
        "raw -> vhd fixed",
        "src.img",
        "out.vhd",
        ["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
        ["--fixed"],
    ),
]


def make_inputs(folder: Path) -> None:
    raw = folder / "src.img"
    with raw.open("wb") as f:
        f.truncate(SIZE)
        for off in range(0, SIZE, 32 * MiB):
            f.seek(off)
            f.write(os.urandom(16 * MiB))
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "vhdx",
            "-o",
            "subformat=dynamic",
            str(raw),
            str(folder / "src.vhdx"),
        ],
        check=True,
    )


def best_of(run: Callable[[], object], target: Path) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        target.unlink(missing_ok=True)
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    target.unlink(missing_ok=True)
    return best


def measure(
    src: Path, dst: Path, qemu_opts: list[str], pyhv_opts: list[str]
) -> tuple[float, float, float]:
    """Best times of qemu-img, the pyhv CLI and the pyhv library for one case."""
    src_fmt = "vhdx" if src.suffix == ".vhdx" else "raw"
    qemu = ["qemu-img", "convert", "-f", src_fmt, *qemu_opts, str(src), str(dst)]
    cli = [sys.executable, "-m", "pyhv.cli", "vhd", "convert", str(src), str(dst), *pyhv_opts]
    disk_type = DiskType(pyhv_opts[0].lstrip("-")) if pyhv_opts else None
    t_qemu = best_of(partial(subprocess.run, qemu, check=True), dst)
    t_cli = best_of(partial(subprocess.run, cli, check=True, stdout=subprocess.DEVNULL), dst)
    t_lib = best_of(partial(convert_image, src, dst, disk_type=disk_type), dst)
    return t_qemu, t_cli, t_lib


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pyhv-bench-", dir=os.environ.get("TMPDIR")) as tmp:
        folder = Path(tmp)
        make_inputs(folder)
        head = ("case", "qemu-img", "pyhv cli", "pyhv lib", "cli/qemu", "lib/qemu")
        print(f"{head[0]:<22}" + "".join(f"{h:>10}" for h in head[1:]))
        ratios = []
        for name, src_name, dst_name, qemu_opts, pyhv_opts in CASES:
            t_qemu, t_cli, t_lib = measure(
                folder / src_name, folder / dst_name, qemu_opts, pyhv_opts
            )
            ratios.append(t_cli / t_qemu)
            print(
                f"{name:<22}{t_qemu:>9.2f}s{t_cli:>9.2f}s{t_lib:>9.2f}s"
                f"{t_cli / t_qemu:>10.2f}{t_lib / t_qemu:>10.2f}"
            )
        print(f"worst pyhv cli / qemu-img ratio: {max(ratios):.2f} (goal <= 1.0)")


if __name__ == "__main__":
    main()
