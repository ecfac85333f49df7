"""The run-state file beside a saved state: one format for the worker and pyhvd."""

from pathlib import Path

from pyhv.saved_state_file import saved_paused, write_run_state


def test_the_run_state_round_trips_in_the_format_the_worker_restores(tmp_path: Path) -> None:
    info = tmp_path / "memory.json"
    write_run_state(info, paused=True)
    assert info.read_text() == '{"state": "Paused"}'
    assert saved_paused(info)
    write_run_state(info, paused=False)
    assert info.read_text() == '{"state": "Running"}'
    assert not saved_paused(info)


def test_a_missing_or_unreadable_run_state_resumes_running(tmp_path: Path) -> None:
    info = tmp_path / "memory.json"
    assert not saved_paused(info)
    for junk in ("", "[]", '{"other": 1}', "not json"):
        info.write_text(junk)
        assert not saved_paused(info)
