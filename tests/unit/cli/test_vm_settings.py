"""``pyhv vm set``: the PATCH it sends, what it prints, and the mistakes it refuses before
asking pyhvd anything."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import get_args

import pytest
from rich.console import Console

from pyhv.cli import vm_settings
from pyhv.cli.app import main
from pyhv.cli.vm_render import memory_text
from pyhv.errors import UsageError
from pyhv.model import AutomaticStartAction, AutomaticStopAction, VmConfig, VmState, VmStatus
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import VmView

NOTHING_SET: dict[str, object] = dict.fromkeys(
    ("name", "processor_count", "memory_startup_mib", "memory_hugepages", "notes")
)


def test_action_choices_are_the_models() -> None:
    assert get_args(vm_settings.StartAction) == tuple(a.value for a in AutomaticStartAction)
    assert get_args(vm_settings.StopAction) == tuple(a.value for a in AutomaticStopAction)


def test_policy_options_name_every_policy_field() -> None:
    assert set(vm_settings.POLICY_OPTIONS) == set(ProcessorPolicy.model_fields)


def test_patch_sends_only_what_was_given() -> None:
    patch = vm_settings.make_patch(NOTHING_SET | {"processor_count": 2}, ProcessorPolicy(), {})
    assert json.loads(patch.model_dump_json(exclude_none=True)) == {"processor_count": 2}


def test_one_policy_option_keeps_the_others() -> None:
    """pyhvd replaces a VM's policy whole, so the patch carries the current one, changed."""
    current = ProcessorPolicy(limit_percent=50, reserve_percent=10, weight=300)
    patch = vm_settings.make_patch(NOTHING_SET, current, {"weight": 500})
    assert patch.policy == ProcessorPolicy(limit_percent=50, reserve_percent=10, weight=500)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"limit_percent": 0}, "--cpu-limit 0: input should be greater than or equal to 1"),
        ({"reserve_percent": 101}, "--cpu-reserve 101: input should be less than or equal to 100"),
        ({"weight": 20_000}, "--cpu-weight 20000: input should be less than or equal to 10000"),
    ],
)
def test_policy_out_of_range_names_the_option(changes: dict[str, int], message: str) -> None:
    with pytest.raises(UsageError) as err:
        vm_settings.make_patch(NOTHING_SET, ProcessorPolicy(), changes)
    assert str(err.value) == message


def test_settings_table() -> None:
    config = VmConfig(
        name="web",
        processor_count=2,
        memory_startup_mib=1024,
        memory_hugepages=True,
        automatic_stop_action=AutomaticStopAction.TURN_OFF,
    )
    status = VmStatus(state=VmState.OFF, since=datetime(2026, 1, 1, tzinfo=UTC))
    view = VmView(config=config, status=status, policy=ProcessorPolicy(limit_percent=50))
    console = Console(record=True, width=120)
    console.print(vm_settings.settings_table(view))
    lines = [" ".join(line.split()) for line in console.export_text().splitlines()]
    assert lines == [
        "Name web",
        "State Off",
        "Processors 2",
        "Processor policy limit 50 %, reserve 0 %, weight 100",
        "Startup memory 1024 MiB (2 MiB pages required)",
        "Automatic start nothing",
        "Automatic stop turn_off",
        "Notes -",
    ]


@pytest.mark.parametrize(
    ("required", "large", "text"),
    [
        (False, None, "512 MiB"),
        (False, True, "512 MiB, on 2 MiB pages"),
        (False, False, "512 MiB, on 4 KiB pages"),
        (True, True, "512 MiB, on 2 MiB pages (2 MiB pages required)"),
    ],
)
def test_memory_shows_the_pages_the_running_qemu_has(
    required: bool, large: bool | None, text: str
) -> None:
    view = VmView(
        config=VmConfig(name="web", memory_hugepages=required),
        status=VmStatus(
            state=VmState.RUNNING if large is not None else VmState.OFF, large_pages=large
        ),
        policy=ProcessorPolicy(),
    )
    assert memory_text(view) == text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to change for VM 'web': give a setting (see --help)"),
        (["--memory", "lots"], "invalid size 'lots': use bytes or a number with K, M, G or T"),
    ],
)
def test_mistakes_are_one_line_before_pyhvd_is_asked(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("PYHV_URL", raising=False)
    monkeypatch.setenv("PYHV_SOCKET", "/nonexistent/pyhvd.sock")  # never reached
    monkeypatch.setattr(sys, "argv", ["pyhv", "vm", "set", "web", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"pyhv: error: {message}\n"
