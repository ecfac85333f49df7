"""`pyhv checkpoint` commands: Checkpoint-VM, Get-VMCheckpoint, Restore-VMCheckpoint, …
through pyhvd's API, like `pyhv vm`.

Checkpoints of a running VM save its memory too (standard) or freeze its file systems
(production); applying one with memory brings the VM back Running (or Saved).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from pyhv.checkpoints import Checkpoint, CheckpointType, draw
from pyhv.checkpoints.tree import NOW_LABEL
from pyhv.cli.backend import Backend, add_socket_option, backend_of
from pyhv.errors import UsageError

app = typer.Typer(no_args_is_help=True)
# Soft wrap: a long name or path stays on one line, whole, for scripts and copy-paste.
_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


add_socket_option(app, "Checkpoints of the host's VMs, through pyhvd (start it with `pyhvd &`).")


def _create(backend: Backend, vm: str, name: str | None, kind: CheckpointType) -> Checkpoint:
    job = backend.client.create_checkpoint(vm, name, kind)
    backend.follow(job, f"VM '{vm}': checkpoint '{job.checkpoint}'")
    return backend.client.checkpoint(vm, job.checkpoint)


@app.command("new")
def new(
    ctx: typer.Context,
    vm: str,
    name: str | None = typer.Option(None, "--name", help="Default: 'VM - (date time)'."),
    kind: CheckpointType = typer.Option(
        CheckpointType.STANDARD,
        "--type",
        help="standard saves a running VM's memory too; production freezes the guest's file "
        "systems through its agent instead (disks only).",
    ),
) -> None:
    """Create a checkpoint (Checkpoint-VM); the VM continues from it."""
    node = _create(backend_of(ctx), vm, name, kind)
    paused = "" if node.paused_ms is None else f" (guest paused {node.paused_ms:.0f} ms)"
    _out.print(f"created checkpoint '{escape(node.name)}' of VM '{escape(vm)}'{paused}")


@app.command("list")
def list_(
    ctx: typer.Context,
    vm: str,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The checkpoint tree, oldest first (Get-VMCheckpoint).

    "Now" marks where the VM's current state hangs."""
    tree = backend_of(ctx).client.checkpoints(vm)
    if as_json:
        print(tree.model_dump_json(indent=2, exclude={"images"}))
        return
    if not tree.checkpoints:
        _out.print(f"VM '{escape(vm)}' has no checkpoints")
        return
    for line in draw(tree):
        text = escape(line)
        if line.endswith(NOW_LABEL):
            text = text[: -len(NOW_LABEL)] + f"[bold green]{NOW_LABEL}[/]"
        _out.print(text, highlight=False)


@app.command("show")
def show(
    ctx: typer.Context,
    vm: str,
    name: str,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One checkpoint (Get-VMCheckpoint -Name): when, what type, which images it froze."""
    client = backend_of(ctx).client
    node = client.checkpoint(vm, name)
    if as_json:
        print(node.model_dump_json(indent=2))
        return
    tree = client.checkpoints(vm)
    parent = tree.get(node.parent).name if node.parent else "-"
    rows = [
        ("Name", node.name),
        ("Id", node.id),
        ("Type", node.type.value),
        ("Created", f"{node.created:%Y-%m-%d %H:%M:%S %Z}"),
        ("Parent", parent),
        ("Current", "yes (Now hangs here)" if tree.current == node.id else "no"),
        ("Memory state", node.memory_state or "none (disks only)"),
        ("Restores as", node.vm_state.value),
    ]
    if node.paused_ms is not None:
        rows.append(("Guest paused", f"{node.paused_ms:.0f} ms"))
    rows += [(f"Disk {key}", path) for key, path in sorted(node.disks.items())]
    for label, value in rows:
        _out.print(f"{label:<14}{escape(value)}", highlight=False)


@app.command("apply")
def apply(
    ctx: typer.Context,
    vm: str,
    name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="Discard the current state, no prompt."),
    checkpoint_first: bool = typer.Option(
        False, "--checkpoint-first", help="Checkpoint the current state, then apply."
    ),
) -> None:
    """Go back to a checkpoint (Restore-VMCheckpoint); the current state is discarded."""
    backend = backend_of(ctx)
    node = backend.client.checkpoint(vm, name)
    if not (yes or checkpoint_first):
        checkpoint_first = _ask_checkpoint_first(vm, node)
    if checkpoint_first:
        saved = _create(backend, vm, None, CheckpointType.STANDARD)
        _out.print(f"checkpointed the current state as '{escape(saved.name)}'")
    job = backend.client.apply_checkpoint(vm, node.id)
    backend.follow(job, f"VM '{vm}': applying '{node.name}'")
    _out.print(f"VM '{escape(vm)}' is back at checkpoint '{escape(node.name)}' ({node.vm_state})")


def _ask_checkpoint_first(vm: str, node: Checkpoint) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(
            f"applying '{node.name}' discards the current state of VM '{vm}': "
            "pass --yes or --checkpoint-first"
        )
    _err.print(f"Applying '{escape(node.name)}' discards the current state of VM '{escape(vm)}'.")
    answer = typer.prompt(
        "Checkpoint the current state first? [y]es / [n]o, discard it / [c]ancel", default="c"
    )
    choice = answer.strip().lower()[:1]
    if choice not in ("y", "n"):
        _err.print(f"cancelled: VM '{escape(vm)}' was not changed", highlight=False)
        raise typer.Exit(1)
    return choice == "y"


@app.command("remove")
def remove(
    ctx: typer.Context,
    vm: str,
    name: str,
    subtree: bool = typer.Option(False, "--subtree", help="Also remove every checkpoint below."),
) -> None:
    """Remove a checkpoint (Remove-VMCheckpoint); its data is merged where still needed."""
    backend = backend_of(ctx)
    tree = backend.client.checkpoints(vm)
    target = tree.find(name, vm)
    gone = tree.subtree(target.id) if subtree else [target]
    job = backend.client.remove_checkpoint(vm, target.id, subtree=subtree)
    backend.follow(job, f"VM '{vm}': removing '{target.name}'")
    names = ", ".join(f"'{escape(c.name)}'" for c in gone)
    _out.print(f"removed checkpoint{'s' if len(gone) > 1 else ''} {names}")


@app.command("rename")
def rename(ctx: typer.Context, vm: str, name: str, new_name: str) -> None:
    """Rename a checkpoint (Rename-VMCheckpoint)."""
    node = backend_of(ctx).client.rename_checkpoint(vm, name, new_name)
    _out.print(f"renamed checkpoint '{escape(name)}' to '{escape(node.name)}'")


@app.command("export")
def export(ctx: typer.Context, vm: str, name: str, folder: Path) -> None:
    """Copy a checkpoint to a new folder inside a storage root (Export-VMCheckpoint).

    The folder gets the checkpoint's disk chains, configuration and memory state."""
    backend = backend_of(ctx)
    out = folder.absolute()
    backend.follow(
        backend.client.export_checkpoint(vm, name, out), f"VM '{vm}': exporting '{name}'"
    )
    _out.print(f"exported checkpoint '{escape(name)}' to {escape(str(out))}")
