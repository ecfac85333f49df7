"""The ``pyhv`` command tree as a whole: ``--version`` and the one-line help of every command."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest
import typer

from pyhv.cli.app import build_app, main


def test_version_prints_the_package_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["pyhv", "--version"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"pyhv {metadata.version('pyhv')}\n"


def commands(group: Any, path: str = "pyhv") -> Iterator[tuple[str, Any]]:
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def test_every_command_lists_with_a_whole_sentence() -> None:
    """The list of commands shows a docstring's first paragraph; one that went on over two
    lines showed as a sentence cut in the middle (`pyhv checkpoint export`)."""
    tree = typer.main.get_command(build_app())
    for path, command in commands(tree):
        first = inspect.cleandoc(command.help or "").split("\n\n")[0]
        assert first and "\n" not in first, f"{path}: {first!r}"
