"""`pyhv vm` commands: New-VM, Get-VM, Start-VM, Stop-VM, … through pyhvd's API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from pyhv.cli import vm_disk, vm_power, vm_settings, vm_transfer
from pyhv.cli.backend import add_socket_option, backend_of
from pyhv.errors import UsageError
from pyhv.service.operations import Power

app = typer.Typer(no_args_is_help=True)
app.add_typer(vm_disk.disk_app, name="disk", help="Attach, detach and list a VM's disks.")
app.add_typer(vm_disk.dvd_app, name="dvd", help="Insert or eject the DVD drive's medium.")


add_socket_option(
    app, "VMs of the host, through pyhvd (start it with `pyhvd &` or `systemctl start pyhvd`)."
)


@app.command("new")
def new(
    ctx: typer.Context,
    name: str,
    cpus: int = typer.Option(1, "--cpus", help="Virtual processors."),
    memory: str = typer.Option("512M", "--memory", help="Startup memory, e.g. 512M or 2G."),
    hugepages: bool = typer.Option(
        False,
        "--hugepages",
        help="Require 2 MiB pages for the memory: refuse to start without them (by default "
        "it is on them while the host can hand them out, else on 4 KiB pages).",
    ),
    generation: int = typer.Option(1, "--generation", help="1 (BIOS) or 2 (UEFI)."),
    kernel: Path | None = typer.Option(None, "--kernel", help="Linux kernel for direct boot."),
    initrd: Path | None = typer.Option(None, "--initrd", help="Initramfs for direct boot."),
    cmdline: str = typer.Option("", "--cmdline", help="Kernel command line."),
    disk: list[Path] = typer.Option([], "--disk", help="Attach a disk (SCSI 0, next slot)."),
) -> None:
    """Create a VM (New-VM). Disks given with --disk go on SCSI controller 0, slots 0, 1, …"""
    from pyhv.model import DiskAttachment, KernelBoot, ScsiController, make_vm_config
    from pyhv.units import parse_mib

    if kernel is None and (initrd is not None or cmdline):
        raise UsageError("--initrd and --cmdline are for direct boot: give --kernel too")
    boot = None
    if kernel is not None:
        boot = KernelBoot(
            kernel=kernel.resolve(), initrd=initrd and initrd.resolve(), cmdline=cmdline
        )
    disks = [DiskAttachment(slot=i, path=p.resolve()) for i, p in enumerate(disk)]
    config = make_vm_config(
        name=name,
        processor_count=cpus,
        memory_startup_mib=parse_mib(memory, "--memory"),
        memory_hugepages=hugepages,
        generation=generation,
        kernel=boot,
        scsi_controllers=[ScsiController(disks=disks)],
    )
    view = backend_of(ctx).create(config)
    Console().print(f"created VM '{escape(view.config.name)}' ({view.config.id})")


@app.command("list")
def list_vms(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List VMs with state, CPU, memory and uptime (Get-VM)."""
    from pyhv.cli import vm_render

    rows = backend_of(ctx).vms()
    if as_json:
        print(json.dumps([vm_render.summary_json(v, x) for v, x in rows], indent=2))
    else:
        Console().print(vm_render.vm_table(rows))


@app.command("show")
def show(
    ctx: typer.Context, name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Configuration, state and statistics of one VM."""
    from pyhv.cli import vm_render

    view, sample = backend_of(ctx).vm(name)
    if as_json:
        print(json.dumps(vm_render.vm_json(view, sample), indent=2))
    else:
        vm_render.print_vm(Console(), view, sample)


@app.command("start")
def start(
    ctx: typer.Context,
    name: str,
    wait_ready: bool = typer.Option(False, "--wait-ready", help="Wait for the guest's ready line."),
    timeout: float = typer.Option(
        vm_power.START_TIMEOUT_S, "--timeout", help="Seconds to wait for the ready line."
    ),
) -> None:
    """Start a VM, or restore it when Saved (Start-VM)."""
    vm_power.start(backend_of(ctx), name, wait_ready=wait_ready, timeout=timeout)


@app.command("stop")
def stop(
    ctx: typer.Context,
    name: str,
    turn_off: bool = typer.Option(False, "--turn-off", help="Power off at once."),
    save: bool = typer.Option(False, "--save", help="Save memory and device state to disk."),
    timeout: float = typer.Option(
        vm_power.STOP_TIMEOUT_S, "--timeout", help="Seconds to wait for the guest."
    ),
) -> None:
    """Shut a VM down with the ACPI power button, turning it off after --timeout (Stop-VM)."""
    if turn_off and save:
        raise typer.BadParameter("choose one of --turn-off and --save")
    vm_power.stop(backend_of(ctx), name, turn_off=turn_off, save=save, timeout=timeout)


@app.command("pause")
def pause(ctx: typer.Context, name: str) -> None:
    """Pause a running VM (Suspend-VM)."""
    vm_power.simple(backend_of(ctx), name, Power.PAUSE)


@app.command("resume")
def resume(ctx: typer.Context, name: str) -> None:
    """Resume a paused VM (Resume-VM)."""
    vm_power.simple(backend_of(ctx), name, Power.RESUME)


@app.command("restart")
def restart(ctx: typer.Context, name: str) -> None:
    """Reset a running VM (Restart-VM)."""
    vm_power.simple(backend_of(ctx), name, Power.RESTART)


@app.command("console")
def console(
    ctx: typer.Context,
    name: str,
    log: bool = typer.Option(False, "--log", help="Print the console log and exit."),
) -> None:
    """Attach to the VM's serial console (vmconnect); Ctrl-] detaches."""
    backend = backend_of(ctx)
    if log:
        sys.stdout.buffer.write(backend.console_log(name))
        return
    from pyhv.cli import vm_console

    with backend.console(name) as conn:
        vm_console.attach(conn, name)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    ctx: typer.Context,
    name: str,
    command: list[str] = typer.Argument(..., help="Command and arguments, after --."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds the command may run."),
) -> None:
    """Run a command in the guest through its guest agent (Invoke-Command -VMName)."""
    result = backend_of(ctx).exec(name, command, timeout_s=vm_power.check_timeout(timeout))
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    raise typer.Exit(result.exit_code)


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="Discard a Saved VM's state, no prompt."),
) -> None:
    """Remove a VM that is not running; its disks stay (Remove-VM).

    A Saved VM's memory state goes with it: asks first."""
    from pyhv.model import VmState

    backend = backend_of(ctx)
    view = backend.client.get_vm(name)
    if view.status.state == VmState.SAVED and not yes:
        _confirm_discarding_saved_state(view.config.name)
    config = backend.remove(view.config.id)  # the VM asked about, even if renamed meanwhile
    Console().print(f"removed VM '{escape(config.name)}'; its disks were kept")


def _confirm_discarding_saved_state(name: str) -> None:
    """As Remove-VM confirms: the saved memory holds what the guest had not written to disk.

    :raises UsageError: off a terminal, where nobody can answer.
    """
    what = f"VM '{name}' is Saved: removing it discards its saved memory state"
    if not sys.stdin.isatty():
        raise UsageError(f"{what}; pass --yes, or start it and shut it down first")
    if not typer.confirm(f"{what}. Remove it?", default=False, err=True):
        raise typer.Exit(1)


# Set-VM, Export-VM, Compare-VM, Import-VM: in modules of their own.
app.command("set")(vm_settings.set_vm)
app.command("export")(vm_transfer.export)
app.command("compare")(vm_transfer.compare)
app.command("import")(vm_transfer.import_)
