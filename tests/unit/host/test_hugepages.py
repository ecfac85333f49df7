"""Which pages a guest's RAM goes on: 2 MiB ones while the kernel can hand them out (from the
pool, then as surplus up to the overcommit limit), else 4 KiB ones; when they are required,
a short host is one line naming what is needed and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.errors import StateError
from pyhv.host.hugepages import large_pages, out_of_huge_pages, pages_for, pool_pages, read_pool


def pool(
    tmp_path: Path,
    total: int,
    free: int,
    reserved: int = 0,
    *,
    surplus: int = 0,
    overcommit: int = 0,
) -> Path:
    for field, value in (
        ("nr_hugepages", total),
        ("free_hugepages", free),
        ("resv_hugepages", reserved),
        ("surplus_hugepages", surplus),
        ("nr_overcommit_hugepages", overcommit),
    ):
        (tmp_path / field).write_text(f"{value}\n")
    return tmp_path


def test_pages_round_up_to_whole_2mib_pages() -> None:
    assert [pages_for(m) for m in (1, 2, 3, 512, 513)] == [1, 1, 2, 256, 257]


def test_a_pool_that_holds_the_memory_passes(tmp_path: Path) -> None:
    assert large_pages("web", 512, True, pool(tmp_path, 300, 256))
    assert large_pages("web", 512, True, pool(tmp_path, 600, 300, reserved=44))


def test_pages_promised_to_another_guest_are_not_available(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="255 free of 600"):
        large_pages("web", 512, True, pool(tmp_path, 600, 300, reserved=45))


def test_a_short_host_is_refused_in_one_line_when_the_pages_are_required(tmp_path: Path) -> None:
    with pytest.raises(StateError) as err:
        large_pages("web", 512, True, pool(tmp_path, 300, 255, surplus=10, overcommit=10))
    message = str(err.value)
    assert "\n" not in message
    assert "needs 256 (512 MiB)" in message and "255 free of 300" in message
    assert "vm.nr_hugepages" in message and "vm.nr_overcommit_hugepages" in message


def test_surplus_pages_up_to_the_overcommit_limit_count(tmp_path: Path) -> None:
    assert read_pool(pool(tmp_path, 100, 0, overcommit=300)).headroom == 300
    # another guest holds 100 surplus pages: 200 more may come
    assert read_pool(pool(tmp_path, 100, 0, surplus=100, overcommit=300)).headroom == 200
    assert large_pages("web", 400, True, pool(tmp_path, 100, 0, surplus=100, overcommit=300))
    assert not large_pages("web", 402, False, pool(tmp_path, 100, 0, surplus=100, overcommit=300))


def test_by_default_the_ram_goes_on_large_pages_only_when_they_are_there(tmp_path: Path) -> None:
    assert large_pages("web", 512, False, pool(tmp_path, 0, 0, overcommit=256))
    assert large_pages("web", 512, False, pool(tmp_path, 256, 256))
    assert not large_pages("web", 512, False, pool(tmp_path, 255, 255))
    assert not large_pages("web", 512, False, tmp_path / "absent")


def test_ram_of_odd_mebibytes_stays_on_small_pages_unless_required(tmp_path: Path) -> None:
    roomy = pool(tmp_path, 0, 0, overcommit=10_000)
    assert not large_pages("web", 513, False, roomy)
    assert large_pages("web", 513, True, roomy)


def test_a_kernel_without_the_pool_has_no_free_pages(tmp_path: Path) -> None:
    assert pool_pages("free_hugepages", tmp_path / "absent") == 0
    with pytest.raises(StateError, match="0 free of 0"):
        large_pages("web", 2, True, tmp_path / "absent")


def test_qemu_out_of_pages_is_told_from_other_start_failures() -> None:
    assert out_of_huge_pages(
        "QEMU failed to start: qemu-system-x86_64: unable to map backing store for guest RAM: "
        "Cannot allocate memory"
    )
    assert not out_of_huge_pages("QEMU failed to start: Could not open 'x.fd': Permission denied")
