"""The ``pyhv`` command tree; each noun lives in its own module and registers here."""

from __future__ import annotations

import os
import sys

import typer

from pyhv.cli import checkpoint, guestkit, host, vhd, vm
from pyhv.errors import PyhvError

app = typer.Typer(
    name="pyhv",
    help="A Hyper-V-style virtualization host for Linux.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(vhd.app, name="vhd", help="Create, inspect, check and edit virtual hard disks.")
app.add_typer(vm.app, name="vm", help="Create and run virtual machines.")
app.add_typer(
    checkpoint.app, name="checkpoint", help="Checkpoints of a VM: a tree of states to go back to."
)
app.add_typer(host.app, name="host", help="The virtualization host itself.")
app.add_typer(
    guestkit.app, name="guest-kit", help="Build the small Linux guest for demos and tests."
)


def fail(message: str, code: int) -> None:
    print(f"pyhv: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main() -> None:
    """Run the CLI: expected errors become one line on stderr and an exit code, no traceback."""
    debug = bool(os.environ.get("PYHV_DEBUG"))
    try:
        app()
    except PyhvError as e:
        if debug:
            raise
        fail(str(e), e.exit_code)
    except OSError as e:
        if debug:
            raise
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        fail(f"{e.strerror or e}{where}", 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
