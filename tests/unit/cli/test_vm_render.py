"""How `pyhv vm list` and `show` present what pyhvd answers, and where the CLI finds pyhvd."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from pyhv.cli.backend import connect
from pyhv.cli.vm_power import print_state
from pyhv.cli.vm_render import format_uptime, print_vm, summary_json, vm_json, vm_table
from pyhv.client import VmStateLine, start_command
from pyhv.model import VmConfig, VmState, VmStatus
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import VmSample, VmView, summarize


def test_format_uptime() -> None:
    assert format_uptime(3723.9) == "01:02:03"
    assert format_uptime(2 * 86400 + 5) == "2d 00:00:05"


def view(state: VmState = VmState.RUNNING, critical: bool = False) -> VmView:
    status = VmStatus(state=state, critical=critical, reason="worker died" if critical else None)
    return VmView(config=VmConfig(name="web"), status=status, policy=ProcessorPolicy())


def test_json_of_a_running_vm_carries_its_statistics() -> None:
    sample = VmSample(cpu_time_s=2.5, memory_assigned_mib=512, uptime_s=9, cpu_percent=12.5)
    doc = vm_json(view(), sample)
    assert (doc["name"], doc["state"], doc["cpu_percent"]) == ("web", "Running", 12.5)
    assert doc["stats"]["memory_assigned_mib"] == 512 and "cpu_percent" not in doc["stats"]
    row = summary_json(view().summary(), None)
    assert (row["name"], row["state"], row["stats"], row["cpu_percent"]) == (
        "web",
        "Running",
        None,
        None,
    )


def test_table_and_details_show_critical_states() -> None:
    out = Console(width=120, record=True)
    broken = view(VmState.OFF, critical=True)
    out.print(vm_table([(summarize(broken.config, broken.status), None)]))
    print_vm(out, broken, None)
    text = out.export_text()
    assert text.count("Off-Critical") == 2 and "worker died" in text


def test_names_and_reasons_are_shown_as_typed() -> None:
    """Rich read them as markup: VM 'x[bold]y' showed as 'xy', and '[/]' failed."""
    config = VmConfig(name="x[bold]y", kernel={"kernel": "/d/[k]", "cmdline": "a=[b]"})
    status = VmStatus(state=VmState.OFF, critical=True, reason="[red]gone")
    odd = VmView(config=config, status=status, policy=ProcessorPolicy())
    out = Console(width=120, record=True)
    out.print(vm_table([(summarize(odd.config, odd.status), None)]))
    print_vm(out, odd, None)
    text = out.export_text()
    assert text.count("x[bold]y") == 2 and text.count("[red]gone") == 2
    assert "/d/[k] a=[b]" in text


def test_connect_prefers_the_socket_option_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYHV_HOME", str(tmp_path))
    monkeypatch.delenv("PYHV_RUN_DIR", raising=False)
    monkeypatch.delenv("PYHV_URL", raising=False)
    monkeypatch.setenv("PYHV_SOCKET", "/run/other.sock")
    assert connect().client.where == "/run/other.sock"
    assert connect(tmp_path / "given.sock").client.where == str(tmp_path / "given.sock")
    monkeypatch.setenv("PYHV_URL", "https://h:8443")
    assert connect().client.where == "https://h:8443"
    assert start_command(tmp_path / "run" / "pyhvd.sock") == f"pyhvd --home {tmp_path}"
    assert start_command(Path("/x.sock")) == f"pyhvd --home {tmp_path} --socket /x.sock"


def test_a_reason_that_repeats_the_state_is_not_shown() -> None:
    """A Saved VM showed as "Saved (saved)"."""
    saved = VmView(
        config=VmConfig(name="web"),
        status=VmStatus(state=VmState.SAVED, reason="saved"),
        policy=ProcessorPolicy(),
    )
    out = Console(width=120, record=True)
    print_vm(out, saved, None)
    out.print(vm_table([(summarize(saved.config, saved.status), None)]))
    text = out.export_text()
    assert "saved" not in text
    assert [line.split() for line in text.splitlines() if line.startswith("State")] == [
        ["State", "Saved"]
    ]
    off = VmStatus(state=VmState.OFF, reason="guest shut down")
    print_vm(out, VmView(config=saved.config, status=off, policy=ProcessorPolicy()), None)
    assert "Off (guest shut down)" in out.export_text()


def test_power_line_leaves_out_a_reason_that_repeats_the_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_state("web", VmStateLine(state="Saved", critical=False, reason="saved"))
    print_state("web", VmStateLine(state="Off", critical=False, reason="turned off"))
    assert capsys.readouterr().out == "VM 'web' is Saved\nVM 'web' is Off (turned off)\n"
