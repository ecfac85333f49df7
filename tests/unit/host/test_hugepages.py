"""The huge page pool check: a short pool is one line naming what is needed and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.errors import StateError
from pyhv.host.hugepages import check_pool, pages_for, pool_pages


def pool(tmp_path: Path, total: int, free: int, reserved: int = 0) -> Path:
    (tmp_path / "nr_hugepages").write_text(f"{total}\n")
    (tmp_path / "free_hugepages").write_text(f"{free}\n")
    (tmp_path / "resv_hugepages").write_text(f"{reserved}\n")
    return tmp_path


def test_pages_round_up_to_whole_2mib_pages() -> None:
    assert [pages_for(m) for m in (1, 2, 3, 512, 513)] == [1, 1, 2, 256, 257]


def test_a_pool_that_holds_the_memory_passes(tmp_path: Path) -> None:
    check_pool("web", 512, pool(tmp_path, 300, 256))
    check_pool("web", 512, pool(tmp_path, 600, 300, reserved=44))


def test_pages_promised_to_another_guest_are_not_available(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="255 free of 600"):
        check_pool("web", 512, pool(tmp_path, 600, 300, reserved=45))


def test_a_short_pool_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(StateError) as err:
        check_pool("web", 512, pool(tmp_path, 300, 255))
    message = str(err.value)
    assert "\n" not in message
    assert "needs 256 (512 MiB)" in message and "255 free of 300" in message
    assert "vm.nr_hugepages" in message


def test_a_kernel_without_the_pool_has_no_free_pages(tmp_path: Path) -> None:
    assert pool_pages("free_hugepages", tmp_path / "absent") == 0
    with pytest.raises(StateError, match="0 free of 0"):
        check_pool("web", 2, tmp_path / "absent")
