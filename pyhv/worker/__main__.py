"""``pyhv-worker --home H VM_ID [--restore] [--accel kvm|tcg --accel-reason TEXT]``: run one VM
until its QEMU ends.

Normally started by :mod:`pyhv.worker.launcher` with stderr going to the VM's worker.log; the
last line of an unsuccessful run is ``pyhv-worker: error: <what went wrong>``. The launcher
passes the accelerator its long-lived process decided once, so a worker neither probes the
host nor imports the code that does; without ``--accel`` the worker decides by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

from pyhv.errors import PyhvError
from pyhv.inventory import Inventory
from pyhv.paths import HomePaths
from pyhv.worker.worker import Worker, WorkerEnv

ERROR_PREFIX = "pyhv-worker: error: "
M_ARENA_MAX = -8  # <malloc.h>


def one_malloc_arena() -> None:
    """glibc gives every thread that allocates an arena of its own, about 150 KiB resident
    each; the worker's threads (NBD I/O, asyncio's helpers) allocate little and briefly, so
    they share the main one. Must run before the first thread starts; a no-op off glibc."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pyhv-worker", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="PYHV_HOME to use")
    parser.add_argument("--restore", action="store_true", help="start from the saved state")
    parser.add_argument("--debug", action="store_true", help="log QMP traffic")
    parser.add_argument("--accel", choices=("kvm", "tcg"), help="accelerator decided by the caller")
    parser.add_argument("--accel-reason", default="decided by the caller", help="why that one")
    parser.add_argument("vm_id")
    return parser.parse_args(argv)


async def _serve(worker: Worker, restore: bool) -> int:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.terminate)
    loop.add_signal_handler(signal.SIGINT, worker.terminate)
    return await worker.run(restore=restore)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    one_malloc_arena()
    logging.basicConfig(
        level=logging.DEBUG if args.debug or os.environ.get("PYHV_DEBUG") else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        paths = HomePaths(args.home)
        config = Inventory(paths).get(args.vm_id)
        accel, reason = args.accel, args.accel_reason
        if accel is None:
            from pyhv.host.accel import choose_accelerator  # only when run by hand

            choice = choose_accelerator()
            accel, reason = choice.name, choice.reason
        logging.getLogger(__name__).info("accelerator %s: %s", accel, reason)
        worker = Worker(config, paths, accel, WorkerEnv())
        code = asyncio.run(_serve(worker, args.restore))
    except PyhvError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    except OSError as e:  # e.g. PYHV_HOME removed under a starting worker
        where = f": {e.filename}" if e.filename else ""
        print(f"{ERROR_PREFIX}{e.strerror or e}{where}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
