"""The power verbs of ``pyhv vm`` (start, stop, pause, resume, restart), shared by their typer
commands in :mod:`pyhv.cli.vm` and a quick path that skips typer.

Every VM start or stop, often from a script, first waits for ``pyhv`` itself to start, and
typer builds a pydantic adapter per parameter before any command runs (about 0.1 s).
:func:`quick_command` parses exactly these verbs' options with argparse (a test holds them
equal to the typer commands'); anything else, ``--help`` and mistakes included, is left to
typer and its messages.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from pyhv.cli.backend import Backend, connect
from pyhv.client import VmStateLine, shown_reason
from pyhv.errors import UsageError
from pyhv.service.operations import Power

START_TIMEOUT_S = 120.0  # seconds to wait for the ready line
STOP_TIMEOUT_S = 60.0  # the guest's time to shut down before it is turned off
MAX_TIMEOUT_S = 3600.0  # the most pyhvd's API takes for any of its timeouts


def check_timeout(seconds: float) -> float:
    """``--timeout`` as pyhvd takes it, refused here under its own name: pyhvd would name its
    query parameter (``query.shutdown_timeout_s``), and an exec request's model would fail in
    the client with a traceback.

    :raises UsageError: for 0 or less, more than an hour, or NaN.
    """
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise UsageError(
            f"--timeout {seconds:g}: give seconds, more than 0 and at most {MAX_TIMEOUT_S:g}"
        )
    return seconds


def print_state(name: str, status: VmStateLine) -> None:
    shown = shown_reason(status.state, status.reason)
    reason = f" ({shown})" if shown else ""
    Console().print(escape(f"VM '{name}' is {status.display_state}{reason}"))


def start(backend: Backend, name: str, *, wait_ready: bool, timeout: float) -> None:
    ready_timeout_s = check_timeout(timeout) if wait_ready else None
    print_state(name, backend.power(name, Power.START, ready_timeout_s=ready_timeout_s))


def stop(backend: Backend, name: str, *, turn_off: bool, save: bool, timeout: float) -> None:
    """``turn_off`` and ``save`` exclude each other; the callers refuse both."""
    if save:
        status = backend.power(name, Power.SAVE)
    elif turn_off:
        status = backend.power(name, Power.TURN_OFF)
    else:
        status = backend.power(name, Power.STOP, shutdown_timeout_s=check_timeout(timeout))
    print_state(name, status)


def simple(backend: Backend, name: str, op: Power) -> None:
    """Pause, resume, restart: no options."""
    print_state(name, backend.power(name, op))


class _Declined(Exception):
    """Not a command line the quick path takes: typer gets it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Declined(message)


def quick_parser() -> argparse.ArgumentParser:
    """``vm [--socket S] VERB NAME [options]`` for the power verbs, as click would read it
    (no abbreviations, no help: those go to typer)."""
    parser = _Parser(prog="pyhv", add_help=False, allow_abbrev=False)
    parser.add_argument("noun", choices=["vm"])
    parser.add_argument("--socket", type=Path)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = verbs.add_parser(name, add_help=False, allow_abbrev=False)
        sub.add_argument("name")
        return sub

    starting = verb("start")
    starting.add_argument("--wait-ready", action="store_true")
    starting.add_argument("--timeout", type=float, default=START_TIMEOUT_S)
    stopping = verb("stop")
    stopping.add_argument("--turn-off", action="store_true")
    stopping.add_argument("--save", action="store_true")
    stopping.add_argument("--timeout", type=float, default=STOP_TIMEOUT_S)
    for name in ("pause", "resume", "restart"):
        verb(name)
    return parser


def quick_command(argv: list[str]) -> Callable[[], None] | None:
    """The command to run for ``argv`` without typer, or None when typer must read it."""
    if len(argv) < 2 or argv[0] != "vm":
        return None
    try:
        a = quick_parser().parse_args(argv)
    except _Declined:
        return None
    if a.verb == "stop" and a.turn_off and a.save:
        return None  # typer says why

    def run() -> None:
        backend = connect(a.socket)  # when run, where main() reports errors as typer's path does
        if a.verb == "start":
            start(backend, a.name, wait_ready=a.wait_ready, timeout=a.timeout)
        elif a.verb == "stop":
            stop(backend, a.name, turn_off=a.turn_off, save=a.save, timeout=a.timeout)
        else:
            simple(backend, a.name, Power(a.verb))  # pause, resume, restart: named as the verbs

    return run
