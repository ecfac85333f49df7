"""Fixtures starting real pyhvd processes; each test gets its own PYHV_HOME."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path; the test
# modules here import the harness by name.
sys.path.insert(0, str(Path(__file__).parent))

from pyhvd_harness import Pyhvd, PyhvdFactory, new_pyhvd, stop_leftover_workers


@pytest.fixture
def pyhvd_factory() -> Iterator[PyhvdFactory]:
    made: list[Pyhvd] = []

    def make(tcp: bool = False, extra_env: dict[str, str] | None = None) -> Pyhvd:
        d = new_pyhvd(tcp, extra_env)
        made.append(d)
        return d

    yield make
    for d in made:
        for c in d.clients:
            c.close()
        d.stop()
        stop_leftover_workers(d)
        shutil.rmtree(d.home, ignore_errors=True)


@pytest.fixture
def pyhvd(pyhvd_factory: PyhvdFactory) -> Pyhvd:
    d = pyhvd_factory()
    d.start()
    return d
