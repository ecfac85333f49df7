"""`pyhv guest-kit` commands: build the small demo/test guest and tell where its files are."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console

from pyhv.guestkit import build_kit, kit_paths

app = typer.Typer(no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)


@app.command()
def build(
    force: bool = typer.Option(
        False, "--force", help="Ask apt for the newest packages and rebuild even a cached kit."
    ),
) -> None:
    """Build the guest kit from Debian packages, or find it in the cache."""
    started = time.monotonic()
    with _err.status("guest kit: starting") as status:

        def progress(step: str) -> None:
            status.update(f"guest kit: {step}")
            if step != "done":
                _err.print(f"[dim]•[/dim] {step}", highlight=False)

        paths = build_kit(force=force, progress=progress)
    _out.print(f"guest kit ready in {time.monotonic() - started:.1f} s: {paths.rootdisk.parent}")


@app.command()
def path(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print the kit's kernel, initrd, root disk and kernel command line."""
    paths = kit_paths()
    if as_json:
        print(json.dumps(paths.as_json()))
        return
    for key, value in paths.as_json().items():
        _out.print(f"{key:12} {value}", highlight=False, soft_wrap=True)
