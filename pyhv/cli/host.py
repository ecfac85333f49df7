"""`pyhv host` commands: ``check`` looks at this machine itself; ``info`` and ``stop-vms`` ask
pyhvd (like the VM commands, through :mod:`pyhv.cli.backend`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pyhv.cli.backend import SOCKET_HELP, connect
from pyhv.host.check import HostReport, HugePagesReport, check_host
from pyhv.host.probe import ProbeResult
from pyhv.model.limits import describe_mib

app = typer.Typer(no_args_is_help=True)

SOCKET = typer.Option(None, "--socket", help=SOCKET_HELP)


@app.command("info")
def info(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    socket: Path | None = SOCKET,
) -> None:
    """What pyhvd manages: its home, storage roots, processors, memory and VMs."""
    host = connect(socket).host()
    if as_json:
        print(host.model_dump_json(indent=2))
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("pyhvd", host.version)
    table.add_row("Home", host.home)
    table.add_row("Storage roots", "\n".join(host.storage_roots))
    table.add_row("Processors", str(host.cores))
    table.add_row("Memory", describe_mib(host.memory_mib))
    table.add_row("VMs", f"{host.vms}, {host.running} running")
    Console().print(table, highlight=False)


@app.command("stop-vms")
def stop_vms(socket: Path | None = SOCKET) -> None:
    """Before a host shutdown: each running VM's automatic stop action (save, shut down, …)."""
    backend = connect(socket)
    backend.follow(backend.client.stop_all_vms(), "host: stopping VMs")
    Console().print("every VM is at rest")


Row = tuple[str, str, bool | None]  # check, result, passed (None: information only)


@app.command("check")
def check(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check that this host can run VMs and show which accelerator they will use.

    Exits 0 when VMs can run, 1 otherwise.
    """
    report = check_host()
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        show_report(report, Console())
    raise typer.Exit(0 if report.can_run_vms else 1)


def _probe(result: ProbeResult | None) -> tuple[str, bool | None]:
    if result is None:
        return "not run", None
    return f"{'passed' if result.ok else 'failed'}: {result.detail}", result.ok


def hugepages_text(pool: HugePagesReport) -> str:
    """Leads with how much guest RAM may still go on 2 MiB pages, the number each start is
    checked against; none says how to have some."""
    if pool.headroom <= 0:
        return (
            "none to give: guest RAM goes on 4 KiB pages and VMs with --hugepages cannot "
            "start (sysctl vm.nr_overcommit_hugepages=N or vm.nr_hugepages=N, "
            "N ≥ their memory / 2 MiB)"
        )
    return (
        f"{describe_mib(pool.headroom_mib)} of guest RAM may go on them "
        f"({pool.available} of {pool.total} pool pages available, {pool.free} free, "
        f"{pool.reserved} reserved; {max(0, pool.overcommit - pool.surplus)} more by "
        f"overcommit, {pool.surplus} of {pool.overcommit} in use)"
    )


def report_rows(report: HostReport) -> list[Row]:
    cpu, kvm, qemu, fw = report.cpu, report.kvm, report.qemu, report.firmware
    cg = report.cgroups
    v2 = f" (v2 at {cg.v2_mount})" if cg.v2_mount and cg.version == "hybrid" else ""
    pool = (
        []
        if report.hugepages is None
        else [("2 MiB huge pages", hugepages_text(report.hugepages), None)]
    )
    return [
        ("Kernel", report.kernel, None),
        ("CPU", f"{cpu.model} ({cpu.vendor}), {cpu.logical_cpus} logical processors", None),
        (
            "Virtualization extensions",
            cpu.virtualization_flag or "none (no vmx or svm flag)",
            cpu.virtualization_flag is not None,
        ),
        ("/dev/kvm", f"{kvm.device} (modules: {', '.join(kvm.modules) or 'none'})", None),
        ("KVM test guest", *_probe(kvm.probe)),
        (
            "QEMU",
            f"{qemu.binary} {qemu.version or ''}".strip() if qemu.binary else "missing",
            qemu.binary is not None,
        ),
        ("TCG test guest", *_probe(qemu.tcg_probe)),
        ("SeaBIOS (generation 1)", fw.seabios or "missing", fw.seabios is not None),
        ("OVMF (generation 2)", fw.ovmf_code or "missing", fw.ovmf_code is not None),
        ("cgroups", f"{cg.version}{v2}: {', '.join(cg.controllers) or 'no controllers'}", None),
        ("Bridges", report.network.bridge, report.network.bridge != "missing"),
        ("/dev/net/tun", report.network.tun, report.network.tun == "ok"),
        ("Accelerator", f"{report.accelerator.name}: {report.accelerator.reason}", None),
        (
            "VM limits",
            f"{report.vm_limits.max_processors} processors, "
            f"{describe_mib(report.vm_limits.max_memory_mib)} of memory per VM",
            None,
        ),
        *pool,
    ]


_MARK = {True: "[green]ok[/]", False: "[red]no[/]", None: ""}


def show_report(report: HostReport, out: Console) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    for _ in range(3):
        table.add_column(overflow="fold")
    for name, result, passed in report_rows(report):
        table.add_row(name, _MARK[passed], result)
    out.print(table)
    for problem in report.problems:
        out.print(f"[red]problem:[/] {problem}", highlight=False)
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if report.can_run_vms:
        out.print(f"This host can run VMs, with {report.accelerator.name}.")
    else:
        out.print("This host cannot run VMs.")
