"""`pyhv vm export`, `import` and `compare`: Export-VM, Import-VM and Compare-VM through pyhvd.

An export is a folder inside pyhvd's storage roots (configuration, disks with their whole
chains, saved state); exports and copying imports are jobs whose progress the CLI shows.
Compare tells everything that keeps a folder from importing; import refuses with the first
of those reasons. VM names are unique here, so ``--new-name`` imports a VM whose name is taken.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from pyhv.cli.backend import Backend, backend_of
from pyhv.errors import ConflictError, UsageError

if TYPE_CHECKING:
    from pyhv.service.schemas import CompatibilityReport, ImportMode

COPY = typer.Option(False, "--copy", help="Copy the files into pyhvd's home; the folder stays.")
NEW_ID = typer.Option(False, "--new-id", help="Copy, with a new VM id (implies --copy).")
REGISTER = typer.Option(False, "--register", help="Use the files where they are (the default).")
NEW_NAME = typer.Option(
    None, "--new-name", help="Import the VM under this name, not its exported one."
)


def import_mode(*, register: bool, copy: bool, new_id: bool) -> ImportMode:
    """Import-VM's default registers in place; ``-Copy -GenerateNewId`` is ``--new-id`` alone,
    since pyhvd gives new ids only to copies.

    :raises UsageError: for --register with --copy or --new-id.
    """
    from pyhv.service.schemas import ImportMode

    if register and (copy or new_id):
        raise UsageError("--register uses the files in place: it excludes --copy and --new-id")
    if new_id:
        return ImportMode.COPY_NEW_ID
    return ImportMode.COPY if copy else ImportMode.REGISTER


def export(ctx: typer.Context, name: str, folder: Path) -> None:
    """Write an Off or Saved VM to a new folder inside a storage root (Export-VM)."""
    backend = backend_of(ctx)
    out = folder.absolute()
    backend.follow(backend.client.export_vm(name, out), f"VM '{name}': exporting")
    Console().print(
        f"exported VM '{escape(name)}' to {escape(str(out))}", highlight=False, soft_wrap=True
    )


def compare(
    ctx: typer.Context,
    folder: Path,
    register: bool = REGISTER,
    copy: bool = COPY,
    new_id: bool = NEW_ID,
    new_name: str | None = NEW_NAME,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Everything that would keep an export from importing here (Compare-VM).

    Exits 0 when it can be imported, 1 otherwise.
    """
    mode = import_mode(register=register, copy=copy, new_id=new_id)
    report = backend_of(ctx).client.compare_vm(folder.absolute(), mode, new_name=new_name)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        out = Console()
        for line in report_lines(report, mode):
            out.print(escape(line), highlight=False, soft_wrap=True)
    raise typer.Exit(0 if report.compatible else 1)


def report_lines(report: CompatibilityReport, mode: ImportMode) -> list[str]:
    head = f"VM '{report.name}' ({report.vm_id})"
    if report.compatible:
        return [f"{head} can be imported ({mode})"]
    problems = (f"  {cli_words(p)}" for p in report.problems)
    return [f"{head} cannot be imported ({mode}):", *problems]


def cli_words(problem: str) -> str:
    """A problem of Compare-VM's, with the option that gets around it when there is one."""
    from pyhv.service.schemas import ID_TAKEN_HINT, NAME_TAKEN_HINT

    for hint, option in ((ID_TAKEN_HINT, "--new-id"), (NAME_TAKEN_HINT, "--new-name")):
        if problem.endswith(hint):
            return f"{problem} ({option})"
    return problem


def import_(
    ctx: typer.Context,
    folder: Path,
    register: bool = REGISTER,
    copy: bool = COPY,
    new_id: bool = NEW_ID,
    new_name: str | None = NEW_NAME,
) -> None:
    """Import an exported VM (Import-VM): register its files in place, or copy them."""
    backend = backend_of(ctx)
    mode = import_mode(register=register, copy=copy, new_id=new_id)
    where = folder.absolute()
    name = _importable(backend, where, mode, new_name)
    job = backend.client.import_vm(where, mode, new_name=new_name)
    backend.follow(job, f"VM '{name}': importing ({mode})")
    vm_id = backend.client.get_vm(name).config.id  # new with --new-id
    state = backend.client.vm_state(vm_id).display_state
    Console().print(f"imported VM '{escape(name)}' ({vm_id}): it is {state}", soft_wrap=True)


def _importable(backend: Backend, folder: Path, mode: ImportMode, new_name: str | None) -> str:
    """The name the VM will have, once Compare-VM finds nothing against it: the import's own
    refusal names a single problem and points to the API for the others.

    :raises ConflictError: naming the first problem and how to see every one.
    """
    report = backend.client.compare_vm(folder, mode, new_name=new_name)
    if not report.compatible:
        more = len(report.problems) - 1
        extra = f" (and {more} more)" if more else ""
        command = f"pyhv vm compare {folder}"
        if new_name is not None:
            command += f" --new-name {shlex.quote(new_name)}"
        raise ConflictError(
            f"cannot import {report.name!r}: {cli_words(report.problems[0])}{extra}; "
            f"see `{command}`"
        )
    return report.name
