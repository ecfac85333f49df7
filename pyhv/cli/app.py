"""The ``pyhv`` command tree; each noun lives in its own module and registers here.

Nouns are imported only when the command line names them: ``pyhv vhd info`` should not pay
for loading the VM, service client and guest-kit code (half a second of start-up). The power
verbs of ``pyhv vm`` skip typer altogether (:mod:`pyhv.cli.vm_power`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING

import pyhv
from pyhv.errors import PyhvError

if TYPE_CHECKING:
    import typer

NOUNS: dict[str, tuple[str, str]] = {
    "vhd": ("pyhv.cli.vhd", "Create, inspect, check and edit virtual hard disks."),
    "vm": ("pyhv.cli.vm", "Create and run virtual machines."),
    "checkpoint": ("pyhv.cli.checkpoint", "Checkpoints of a VM: a tree of states to go back to."),
    "host": ("pyhv.cli.host", "The virtualization host itself."),
    "guest-kit": ("pyhv.cli.guestkit", "Build the small Linux guest for demos and tests."),
}


def build_app(only: str | None = None) -> typer.Typer:
    """The command tree with every noun, or just ``only`` when the command line names one."""
    import typer

    root = typer.Typer(
        name="pyhv",
        help="A Hyper-V-style virtualization host for Linux.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @root.callback()
    def options(
        version: bool = typer.Option(
            False, "--version", is_eager=True, callback=_show_version, help="Print the version."
        ),
    ) -> None:
        pass

    for name, (module, help_text) in NOUNS.items():
        if only is None or name == only:
            sub = importlib.import_module(module).app
            root.add_typer(sub, name=name, help=help_text)
    return root


def version_line() -> str:
    """``pyhv 0.1.0``: the installed package's version, which a bug report needs first."""
    try:
        version = metadata.version("pyhv")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = pyhv.__version__
    return f"pyhv {version}"


def _show_version(value: bool) -> None:
    import typer

    if value:
        print(version_line())
        raise typer.Exit()


def _noun(argv: list[str]) -> str | None:
    return argv[0] if argv and argv[0] in NOUNS else None


def __getattr__(name: str) -> typer.Typer:
    """``pyhv.cli.app.app``: the full tree, for tests and documentation tools."""
    if name == "app":
        return build_app()
    raise AttributeError(name)


def fail(message: str, code: int) -> None:
    print(f"pyhv: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _usage_line(e: Exception) -> tuple[str, int]:
    """Click's usage errors as one line naming the command, and their exit code (2)."""
    ctx = getattr(e, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    code = int(getattr(e, "exit_code", 1))
    hint = " (see --help)" if code == 2 else ""
    fmt = getattr(e, "format_message", None)
    return f"{where}{fmt() if fmt else e}{hint}", code


def _typer_main(argv: list[str]) -> object:
    """The command through typer; click's usage errors become one line too."""
    import click
    import typer

    # Typer >= 0.20 vendors click; its errors then derive from TyperException, not click's.
    cli_errors = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
    try:
        return build_app(_noun(argv))(args=argv, prog_name="pyhv", standalone_mode=False)
    except typer.Abort:
        fail("interrupted", 130)
    except cli_errors as e:
        line, code = _usage_line(e)
        if not getattr(e, "format_message", lambda: "x")():  # help shown for a bare group
            raise SystemExit(code) from None
        fail(line, code)
    return None


def main() -> None:
    """Run the CLI: expected errors become one line on stderr and an exit code, no traceback."""
    from pyhv.cli.vm_power import quick_command

    debug = bool(os.environ.get("PYHV_DEBUG"))
    argv = sys.argv[1:]
    quick = quick_command(argv)
    run: Callable[[], object] = quick if quick is not None else lambda: _typer_main(argv)
    try:
        code = run()
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
    raise SystemExit(code if isinstance(code, int) else 0)
