"""The power verbs' quick path reads exactly what their typer commands read, and leaves every
other command line (help, mistakes, other verbs) to typer."""

from __future__ import annotations

import argparse

import pytest
import typer.main

from pyhv.cli import vm
from pyhv.cli.vm_power import MAX_TIMEOUT_S, check_timeout, quick_command, quick_parser
from pyhv.errors import UsageError

VERBS = ("start", "stop", "pause", "resume", "restart")


def _subparser(verb: str) -> argparse.ArgumentParser:
    parser = quick_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = action.choices[verb]
    return sub


@pytest.mark.parametrize("verb", VERBS)
def test_quick_options_are_the_typer_commands(verb: str) -> None:
    group = typer.main.get_group(vm.app)
    command = group.commands[verb]
    typer_options = {
        (opt, p.default) for p in command.params if p.param_type_name == "option" for opt in p.opts
    }
    quick_options = {
        (opt, a.default)
        for a in _subparser(verb)._actions
        if a.option_strings
        for opt in a.option_strings
    }
    assert quick_options == typer_options
    group_options = {o for p in group.params if p.param_type_name == "option" for o in p.opts}
    assert {o for a in quick_parser()._actions for o in a.option_strings} == group_options


@pytest.mark.parametrize(
    "argv",
    [
        ["vm", "start", "web"],
        ["vm", "--socket", "/run/x.sock", "start", "web", "--wait-ready", "--timeout", "5"],
        ["vm", "stop", "web", "--timeout=3"],
        ["vm", "stop", "web", "--save"],
        ["vm", "restart", "web"],
    ],
)
def test_power_verbs_take_the_quick_path(argv: list[str]) -> None:
    assert quick_command(argv) is not None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["vm"],
        ["vm", "list"],
        ["vm", "start"],
        ["vm", "start", "--help"],
        ["vm", "start", "web", "--wait"],  # click takes no abbreviations
        ["vm", "start", "web", "--timeout", "soon"],
        ["vm", "start", "web", "--socket", "/run/x.sock"],
        ["vm", "stop", "web", "--turn-off", "--save"],
        ["vm", "pause", "web", "--timeout", "3"],
        ["vhd", "info", "x.vhdx"],
    ],
)
def test_everything_else_is_left_to_typer(argv: list[str]) -> None:
    assert quick_command(argv) is None


@pytest.mark.parametrize("seconds", [0.0, -3.0, 3601.0, float("nan"), float("inf")])
def test_timeouts_pyhvd_refuses_are_refused_as_timeout(seconds: float) -> None:
    """pyhvd named its parameter ("query.shutdown_timeout_s: …"); `vm exec` ended in a
    pydantic traceback."""
    with pytest.raises(UsageError, match=r"^--timeout \S+: give seconds, more than 0 and at"):
        check_timeout(seconds)


def test_timeouts_pyhvd_takes() -> None:
    assert check_timeout(0.5) == 0.5 and check_timeout(MAX_TIMEOUT_S) == MAX_TIMEOUT_S
