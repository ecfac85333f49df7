"""`pyhv vm` commands: New-VM, Get-VM, Start-VM, Stop-VM, … for this host's VMs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from pyhv.cli import vm_console, vm_disk, vm_render
from pyhv.model import DiskAttachment, KernelBoot, ScsiController, make_vm_config
from pyhv.units import MiB, parse_size
from pyhv.worker.local import LocalHost

app = typer.Typer(no_args_is_help=True)
app.add_typer(vm_disk.disk_app, name="disk", help="Attach, detach and list a VM's disks.")
app.add_typer(vm_disk.dvd_app, name="dvd", help="Insert or eject the DVD drive's medium.")


def _host() -> LocalHost:
    return LocalHost()


def _print_state(name: str, host: LocalHost) -> None:
    status = host.status(host.get(name))
    reason = f" ({status.reason})" if status.reason else ""
    Console().print(f"VM '{name}' is {status.display_state}{reason}")


@app.command("new")
def new(
    name: str,
    cpus: int = typer.Option(1, "--cpus", help="Virtual processors."),
    memory: str = typer.Option("512M", "--memory", help="Startup memory, e.g. 512M or 2G."),
    generation: int = typer.Option(1, "--generation", help="1 (BIOS) or 2 (UEFI)."),
    kernel: Path | None = typer.Option(None, "--kernel", help="Linux kernel for direct boot."),
    initrd: Path | None = typer.Option(None, "--initrd", help="Initramfs for direct boot."),
    cmdline: str = typer.Option("", "--cmdline", help="Kernel command line."),
    disk: list[Path] = typer.Option([], "--disk", help="Attach a disk (SCSI 0, next slot)."),
) -> None:
    """Create a VM (New-VM). Disks given with --disk go on SCSI controller 0, slots 0, 1, …"""
    boot = None
    if kernel is not None:
        boot = KernelBoot(
            kernel=kernel.resolve(), initrd=initrd and initrd.resolve(), cmdline=cmdline
        )
    disks = [DiskAttachment(slot=i, path=p.resolve()) for i, p in enumerate(disk)]
    config = make_vm_config(
        name=name,
        processor_count=cpus,
        memory_startup_mib=parse_size(memory) // MiB,
        generation=generation,
        kernel=boot,
        scsi_controllers=[ScsiController(disks=disks)],
    )
    config = _host().inventory.create(config)
    Console().print(f"created VM '{config.name}' ({config.id})")


@app.command("list")
def list_vms(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List VMs with state, CPU, memory and uptime (Get-VM)."""
    host = _host()
    rows = [(c, host.status(c), host.sample(c)) for c in host.inventory.list()]
    if as_json:
        print(json.dumps([vm_render.vm_json(c, s, x) for c, s, x in rows], indent=2))
    else:
        Console().print(vm_render.vm_table(rows))


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Configuration, state and statistics of one VM."""
    host = _host()
    config = host.get(name)
    status, sample = host.status(config), host.sample(config)
    if as_json:
        print(json.dumps(vm_render.vm_json(config, status, sample), indent=2))
    else:
        vm_render.print_vm(Console(), config, status, sample)


@app.command("start")
def start(
    name: str,
    wait_ready: bool = typer.Option(False, "--wait-ready", help="Wait for the guest's ready line."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the ready line."),
) -> None:
    """Start a VM, or restore it when Saved (Start-VM)."""
    host = _host()
    host.start(name, wait_ready_s=timeout if wait_ready else None)
    _print_state(name, host)


@app.command("stop")
def stop(
    name: str,
    turn_off: bool = typer.Option(False, "--turn-off", help="Power off at once."),
    save: bool = typer.Option(False, "--save", help="Save memory and device state to disk."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for the guest."),
) -> None:
    """Shut a VM down with the ACPI power button, turning it off after --timeout (Stop-VM)."""
    if turn_off and save:
        raise typer.BadParameter("choose one of --turn-off and --save")
    host = _host()
    if save:
        host.save(name)
    elif turn_off:
        host.turn_off(name)
    else:
        host.shutdown(name, timeout)
    _print_state(name, host)


@app.command("pause")
def pause(name: str) -> None:
    """Pause a running VM (Suspend-VM)."""
    host = _host()
    host.pause(name)
    _print_state(name, host)


@app.command("resume")
def resume(name: str) -> None:
    """Resume a paused VM (Resume-VM)."""
    host = _host()
    host.resume(name)
    _print_state(name, host)


@app.command("restart")
def restart(name: str) -> None:
    """Reset a running VM (Restart-VM)."""
    host = _host()
    host.restart(name)
    _print_state(name, host)


@app.command("console")
def console(
    name: str,
    log: bool = typer.Option(False, "--log", help="Print the console log and exit."),
) -> None:
    """Attach to the VM's serial console (vmconnect); Ctrl-] detaches."""
    host = _host()
    config = host.get(name)
    if log:
        path = host.paths.vm_console_log(config.id)
        sys.stdout.buffer.write(path.read_bytes() if path.exists() else b"")
        return
    vm_console.attach(host.client(config).attach_console(), name)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    name: str,
    command: list[str] = typer.Argument(..., help="Command and arguments, after --."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds the command may run."),
) -> None:
    """Run a command in the guest through its guest agent (Invoke-Command -VMName)."""
    result = _host().exec(name, command, timeout_s=timeout)
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    raise typer.Exit(result.exit_code)


@app.command("remove")
def remove(name: str) -> None:
    """Remove a VM that is not running; its disks stay (Remove-VM)."""
    config = _host().remove(name)
    Console().print(f"removed VM '{config.name}'; its disks were kept")
