"""``pyhv-worker --home H VM_ID [--restore]``: run one VM until its QEMU ends.

Normally started by :mod:`pyhv.worker.launcher` with stderr going to the VM's worker.log; the
last line of an unsuccessful run is ``pyhv-worker: error: <what went wrong>``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from pyhv.errors import PyhvError
from pyhv.host.accel import choose_accelerator
from pyhv.inventory import Inventory
from pyhv.paths import HomePaths
from pyhv.worker.worker import Worker, WorkerEnv

ERROR_PREFIX = "pyhv-worker: error: "


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pyhv-worker", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="PYHV_HOME to use")
    parser.add_argument("--restore", action="store_true", help="start from the saved state")
    parser.add_argument("--debug", action="store_true", help="log QMP traffic")
    parser.add_argument("vm_id")
    return parser.parse_args(argv)


async def _serve(worker: Worker, restore: bool) -> int:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.terminate)
    loop.add_signal_handler(signal.SIGINT, worker.terminate)
    return await worker.run(restore=restore)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug or os.environ.get("PYHV_DEBUG") else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        paths = HomePaths(args.home)
        config = Inventory(paths).get(args.vm_id)
        accel = choose_accelerator()
        logging.getLogger(__name__).info("accelerator %s: %s", accel.name, accel.reason)
        worker = Worker(config, paths, accel.name, WorkerEnv())
        code = asyncio.run(_serve(worker, args.restore))
    except PyhvError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
