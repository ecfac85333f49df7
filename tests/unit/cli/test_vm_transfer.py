"""``pyhv vm import`` and ``compare``: which import mode the flags mean, and the report's text."""

from __future__ import annotations

import sys

import pytest

from pyhv.cli.app import main
from pyhv.cli.vm_transfer import cli_words, import_mode, report_lines
from pyhv.errors import UsageError
from pyhv.service.schemas import CompatibilityReport, ImportMode


@pytest.mark.parametrize(
    ("register", "copy", "new_id", "mode"),
    [
        (False, False, False, ImportMode.REGISTER),
        (True, False, False, ImportMode.REGISTER),
        (False, True, False, ImportMode.COPY),
        (False, False, True, ImportMode.COPY_NEW_ID),
        (False, True, True, ImportMode.COPY_NEW_ID),
    ],
)
def test_flags_pick_the_mode(register: bool, copy: bool, new_id: bool, mode: ImportMode) -> None:
    assert import_mode(register=register, copy=copy, new_id=new_id) == mode


@pytest.mark.parametrize(("copy", "new_id"), [(True, False), (False, True)])
def test_register_excludes_copying(copy: bool, new_id: bool) -> None:
    with pytest.raises(UsageError, match="--register uses the files in place"):
        import_mode(register=True, copy=copy, new_id=new_id)


def test_report_lines() -> None:
    fine = CompatibilityReport(vm_id="i", name="web", compatible=True, problems=[])
    assert report_lines(fine, ImportMode.COPY) == ["VM 'web' (i) can be imported (copy)"]
    problems = [
        "a VM with id i already exists: import with a new id",
        "a VM named 'web' already exists: import under another name",
        "disk 0:0: gone",
    ]
    clash = CompatibilityReport(vm_id="i", name="web", compatible=False, problems=problems)
    assert report_lines(clash, ImportMode.REGISTER) == [
        "VM 'web' (i) cannot be imported (register):",
        "  a VM with id i already exists: import with a new id (--new-id)",
        "  a VM named 'web' already exists: import under another name (--new-name)",
        "  disk 0:0: gone",
    ]


def test_problems_name_the_option_that_gets_around_them() -> None:
    taken = "a VM named 'web' already exists: import under another name"
    assert cli_words(taken) == f"{taken} (--new-name)"
    unknown = "network adapter 0: unknown virtual switch 'import under another name'"
    assert cli_words(unknown) == unknown


@pytest.mark.parametrize("verb", ["import", "compare"])
def test_conflicting_flags_are_one_line_before_pyhvd_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    monkeypatch.delenv("PYHV_URL", raising=False)
    monkeypatch.setenv("PYHV_SOCKET", "/nonexistent/pyhvd.sock")  # never reached
    monkeypatch.setattr(sys, "argv", ["pyhv", "vm", verb, "/x", "--register", "--new-id"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "pyhv: error: --register uses the files in place: it excludes --copy and --new-id\n"
    )
