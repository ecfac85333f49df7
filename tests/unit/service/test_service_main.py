"""``pyhvd``'s start: the home it is given, made on first start or refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.service import __main__ as pyhvd


@pytest.fixture(autouse=True)
def no_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYHV_RUN_DIR", raising=False)


def test_a_missing_home_is_created_as_the_default_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Path] = []

    async def serve(opts: pyhvd.Options) -> None:
        served.append(opts.home)

    monkeypatch.setattr(pyhvd, "serve", serve)
    home = tmp_path / "new" / "home"
    pyhvd.main(["--home", str(home)])
    assert served == [home] and (home / "run").is_dir()


def test_a_home_that_cannot_be_created_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed a bare "[Errno …]"."""
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"
    with pytest.raises(SystemExit) as exited:
        pyhvd.main(["--home", str(home)])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        f"pyhvd: error: cannot create {home}: Not a directory; "
        "give --home (or PYHV_HOME) a folder pyhvd can create or write\n"
    )
