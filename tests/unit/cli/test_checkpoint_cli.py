"""``pyhv checkpoint apply``'s question when neither --yes nor --checkpoint-first is given."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from pyhv.checkpoints import Checkpoint
from pyhv.cli import checkpoint

NODE = Checkpoint(
    id="id-1", name="c1", parent=None, created=datetime(2026, 1, 1, tzinfo=UTC), disks={}, config={}
)


@pytest.mark.parametrize(("answer", "first"), [("y", True), ("no", False)])
def test_the_answer_says_whether_to_checkpoint_first(
    monkeypatch: pytest.MonkeyPatch, answer: str, first: bool
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr(typer, "prompt", lambda *a, **k: answer)
    assert checkpoint._ask_checkpoint_first("web", NODE) is first


@pytest.mark.parametrize("answer", ["c", "", "x"])
def test_a_cancel_says_so_on_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answer: str
) -> None:
    """It exited 1 without a word."""
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr(typer, "prompt", lambda *a, **k: answer)
    with pytest.raises(typer.Exit) as exited:
        checkpoint._ask_checkpoint_first("web", NODE)
    assert exited.value.exit_code == 1
    assert capsys.readouterr().err.splitlines()[-1] == "cancelled: VM 'web' was not changed"
