"""How ``pyhv vm list`` and ``show`` present VMs: rich tables for people, JSON for scripts."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pyhv.client import shown_reason
from pyhv.model import DiskStats, VmState
from pyhv.service.schemas import VmSample, VmSummary, VmView
from pyhv.units import format_size

_STATE_STYLE = {"Running": "green", "Paused": "yellow", "Saved": "cyan"}


def format_uptime(seconds: float) -> str:
    """``1:02:03`` like Hyper-V Manager, ``2d 01:02:03`` past a day."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text


def _stats_json(sample: VmSample | None) -> dict[str, Any]:
    stats = sample.model_dump(mode="json", exclude={"cpu_percent"}) if sample else None
    return {"stats": stats, "cpu_percent": sample.cpu_percent if sample else None}


def summary_json(summary: VmSummary, sample: VmSample | None) -> dict[str, Any]:
    """One VM of ``pyhv vm list --json``."""
    return summary.model_dump(mode="json") | _stats_json(sample)


def vm_json(view: VmView, sample: VmSample | None) -> dict[str, Any]:
    """``pyhv vm show --json``."""
    status = view.status
    return {
        "name": view.config.name,
        "id": view.config.id,
        "state": str(status.state),
        "critical": status.critical,
        "status": status.model_dump(mode="json"),
        "config": view.config.model_dump(mode="json"),
        "policy": view.policy.model_dump(mode="json"),
    } | _stats_json(sample)


def _state_text(state: VmState, critical: bool) -> str:
    style = "red" if critical else _STATE_STYLE.get(str(state), "")
    text = f"{state}-Critical" if critical else str(state)
    return f"[{style}]{text}[/]" if style else text


def vm_table(rows: list[tuple[VmSummary, VmSample | None]]) -> Table:
    table = Table("Name", "State", "CPU %", "Memory (MiB)", "Uptime", "Status")
    for vm, sample in rows:
        table.add_row(
            escape(vm.name),  # names, reasons and paths are text, not rich markup
            _state_text(vm.state, vm.critical),
            f"{sample.cpu_percent:.0f}" if sample else "0",
            str(sample.memory_assigned_mib if sample else 0),
            format_uptime(sample.uptime_s) if sample else "00:00:00",
            escape(shown_reason(vm.state, vm.reason) or ""),
        )
    return table


def disk_qos(max_iops: int | None, max_bytes_per_sec: int | None) -> str:
    """``500 IOPS, 10M/s``; empty when the disk is not limited."""
    parts = [f"{max_iops} IOPS"] if max_iops else []
    if max_bytes_per_sec:
        parts.append(f"{format_size(max_bytes_per_sec)}/s")
    return ", ".join(parts)


def disk_io(d: DiskStats) -> str:
    """The provider's counters of one disk, with mean latencies once there was I/O."""
    text = (
        f"{d.read_ops} reads ({d.read_bytes // 1024} KiB), "
        f"{d.write_ops} writes ({d.write_bytes // 1024} KiB), {d.flush_ops} flushes"
    )
    latency = [
        f"{kind} {ms:.2f} ms"
        for kind, ms in (("read", d.read_latency_ms_avg), ("write", d.write_latency_ms_avg))
        if ms is not None
    ]
    return f"{text}; mean latency {', '.join(latency)}" if latency else text


def memory_text(view: VmView) -> str:
    """The startup memory and, while QEMU runs, the page size its RAM is on: by default the
    host picks it at each start (``pyhv.host.hugepages``)."""
    pages = {True: ", on 2 MiB pages", False: ", on 4 KiB pages", None: ""}
    required = " (2 MiB pages required)" if view.config.memory_hugepages else ""
    return f"{view.config.memory_startup_mib} MiB{pages[view.status.large_pages]}{required}"


def print_vm(console: Console, view: VmView, sample: VmSample | None) -> None:
    config, status = view.config, view.status
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    info.add_row("Name", escape(config.name))  # names, reasons, paths: text, not markup
    info.add_row("Id", config.id)
    shown = shown_reason(status.state, status.reason)
    reason = f" ({escape(shown)})" if shown else ""
    info.add_row("State", _state_text(status.state, status.critical) + reason)
    info.add_row("Generation", str(config.generation))
    info.add_row("Processors", str(config.processor_count))
    info.add_row("Startup memory", memory_text(view))
    if config.kernel is not None:
        info.add_row("Kernel", escape(f"{config.kernel.kernel} {config.kernel.cmdline}"))
    for c, disk in config.disks():
        ro = " (read-only)" if disk.read_only else ""
        qos = disk_qos(disk.max_iops, disk.max_bytes_per_sec)
        text = f"{disk.path}{ro}" + (f", QoS {qos}" if qos else "")
        info.add_row(f"SCSI {c}:{disk.slot}", escape(text))
    if config.dvd is not None:
        medium = config.dvd.path or "(empty)"
        info.add_row(f"DVD {config.dvd.controller}:{config.dvd.slot}", escape(str(medium)))
    if sample is not None:
        info.add_row("CPU", f"{sample.cpu_percent:.0f} %, {sample.cpu_time_s:.1f} s total")
        per = ", ".join(f"{t:.1f}" for t in sample.cpu_time_per_vcpu_s)
        info.add_row("CPU per vCPU (s)", per)
        used = f", {sample.memory_used_mib} MiB used" if sample.memory_used_mib is not None else ""
        info.add_row("Memory", f"{sample.memory_assigned_mib} MiB assigned{used}")
        info.add_row("Uptime", format_uptime(sample.uptime_s))
        for slot, d in sample.disks.items():
            info.add_row(f"Disk {slot} I/O", disk_io(d))
    console.print(info)
