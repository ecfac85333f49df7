"""What to do with a journal found half done (pure): finish the operation or undo it.

Before the commit index only new files were made, and nothing points at them yet: undoing is
deleting them, including the one whose creation may have been cut off. From the commit index
on every step is idempotent and the new tree and configuration are in the journal, so the rest
is simply run again. Either way the VM ends with a tree whose every checkpoint applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pyhv.checkpoints.journal import Journal
from pyhv.checkpoints.steps import Delete, Step, created_files


class Direction(StrEnum):
    FORWARD = "forward"
    BACK = "back"


@dataclass(frozen=True)
class Recovery:
    direction: Direction
    steps: list[Step]  # what is left to run; a forward recovery keeps journaling them


def plan_recovery(journal: Journal) -> Recovery:
    if journal.done >= journal.commit:
        return Recovery(Direction.FORWARD, journal.steps[journal.done :])
    made = [p for s in journal.steps[: journal.commit] for p in created_files(s)]
    undo: list[Step] = [Delete(path=p) for p in reversed(made)]
    return Recovery(Direction.BACK, undo)
