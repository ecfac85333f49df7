"""`pyhv vm set`: Set-VM, Set-VMProcessor and Set-VMMemory in one command, as pyhvd's
``PATCH /vms/{id}`` takes them in one request.

Options left out stay as they are. Processors, memory and huge pages change only while the VM
is Off (pyhvd refuses them otherwise, in one line); the rest changes at any time, the processor
policy live on a running VM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pyhv.cli.backend import backend_of
from pyhv.cli.vm_render import memory_text
from pyhv.errors import UsageError

if TYPE_CHECKING:
    from pyhv.service.policies import ProcessorPolicy
    from pyhv.service.schemas import VmPatch, VmView

# AutomaticStartAction's and AutomaticStopAction's values, spelled out so that loading the
# `vm` commands does not load the models (a unit test holds them equal).
StartAction = Literal["nothing", "start_if_running", "start"]
StopAction = Literal["save", "shutdown", "turn_off"]

# The policy's fields as `pyhv vm set` names them, for errors about their values.
POLICY_OPTIONS = {
    "limit_percent": "--cpu-limit",
    "reserve_percent": "--cpu-reserve",
    "weight": "--cpu-weight",
}


def set_vm(
    ctx: typer.Context,
    name: str,
    new_name: str | None = typer.Option(None, "--new-name", help="Rename the VM (Rename-VM)."),
    cpus: int | None = typer.Option(None, "--cpus", help="Virtual processors (VM Off)."),
    memory: str | None = typer.Option(
        None, "--memory", help="Startup memory, e.g. 512M or 2G (VM Off)."
    ),
    hugepages: bool | None = typer.Option(
        None,
        "--hugepages/--no-hugepages",
        help="Require 2 MiB pages for the memory, or take them only while the host can "
        "hand them out (VM Off).",
    ),
    cpu_limit: int | None = typer.Option(
        None, "--cpu-limit", help="Most of its processors' time the VM may use, 1–100 %."
    ),
    cpu_reserve: int | None = typer.Option(
        None, "--cpu-reserve", help="Processor time held for the VM when it starts, 0–100 %."
    ),
    cpu_weight: int | None = typer.Option(
        None, "--cpu-weight", help="Share against other VMs under contention, 1–10000 (100)."
    ),
    notes: str | None = typer.Option(None, "--notes", help="Free text kept with the VM."),
    start_action: StartAction | None = typer.Option(
        None, "--automatic-start-action", help="What pyhvd does with the VM when pyhvd starts."
    ),
    stop_action: StopAction | None = typer.Option(
        None, "--automatic-stop-action", help="What `pyhv host stop-vms` does with the VM."
    ),
) -> None:
    """Change a VM's settings (Set-VM, Set-VMProcessor, Set-VMMemory); prints the result."""
    from pyhv.units import parse_mib

    client = backend_of(ctx).client
    policy_changes = {
        field: value
        for field, value in zip(POLICY_OPTIONS, (cpu_limit, cpu_reserve, cpu_weight), strict=True)
        if value is not None
    }
    settings = {
        "name": new_name,
        "processor_count": cpus,
        "memory_startup_mib": None if memory is None else parse_mib(memory, "--memory"),
        "memory_hugepages": hugepages,
        "notes": notes,
        "automatic_start_action": start_action,
        "automatic_stop_action": stop_action,
    }
    if not policy_changes and all(value is None for value in settings.values()):
        raise UsageError(f"nothing to change for VM '{name}': give a setting (see --help)")
    current = client.get_vm(name)
    patch = make_patch(settings, current.policy, policy_changes)
    view = client.update_vm(current.config.id, patch)
    out = Console()
    out.print(f"VM '{escape(view.config.name)}' set:", highlight=False)
    out.print(settings_table(view), highlight=False)


def make_patch(
    settings: Mapping[str, object], policy: ProcessorPolicy, policy_changes: dict[str, int]
) -> VmPatch:
    """The PATCH body: ``policy`` with the options' changes, since pyhvd replaces a VM's
    policy whole.

    :raises UsageError: a policy value out of range, named by its option.
    """
    from pydantic import ValidationError

    from pyhv.service.policies import ProcessorPolicy
    from pyhv.service.schemas import VmPatch

    new_policy = None
    if policy_changes:
        try:
            new_policy = ProcessorPolicy.model_validate(policy.model_dump() | policy_changes)
        except ValidationError as err:
            first = err.errors()[0]
            option = POLICY_OPTIONS[str(first["loc"][0])]
            message = str(first["msg"])
            raise UsageError(
                f"{option} {first['input']}: {message[:1].lower()}{message[1:]}"
            ) from None
    return VmPatch.model_validate({**settings, "policy": new_policy})


def settings_table(view: VmView) -> Table:
    """What ``vm set`` can change, as the VM has it now."""
    config, policy = view.config, view.policy
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("Name", config.name),
        ("State", str(view.status.state)),
        ("Processors", str(config.processor_count)),
        (
            "Processor policy",
            f"limit {policy.limit_percent} %, reserve {policy.reserve_percent} %, "
            f"weight {policy.weight}",
        ),
        ("Startup memory", memory_text(view)),
        ("Automatic start", str(config.automatic_start_action)),
        ("Automatic stop", str(config.automatic_stop_action)),
        ("Notes", config.notes or "-"),
    ]
    for label, value in rows:
        table.add_row(label, escape(value))
    return table
