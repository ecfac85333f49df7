"""Set-VHD -ParentPath: point a differencing disk at its parent's new location.

The child is opened alone (its old parent path may no longer exist); the new parent must be
the very disk the child was made from, which the identity check proves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from pyhv.errors import ParentError, UsageError
from pyhv.storage import open_image, open_layer
from pyhv.storage.formats import Differencing
from pyhv.storage.image import DiskType
from pyhv.storage.operations.check import link_problems


def set_parent(child: str | os.PathLike[str], parent: str | os.PathLike[str]) -> None:
    """Rewrite ``child``'s parent locators to ``parent`` after checking it is the right disk.

    :raises UsageError: ``child`` is not a differencing disk.
    :raises ParentError: ``parent`` is not the disk ``child`` was made from, or makes a loop.
    """
    parent_path = Path(parent).absolute()
    with open_layer(child, writable=True) as layer:
        if layer.disk_type != DiskType.DIFFERENCING:
            raise UsageError(f"{layer.path} is not a differencing disk: it has no parent to set")
        with open_image(parent_path) as new_parent:
            child_real = os.path.realpath(layer.path)
            if any(os.path.realpath(a.path) == child_real for a in new_parent.chain()):
                raise ParentError(f"{layer.path}: {parent_path} descends from it (parent loop)")
            problems = link_problems(layer, new_parent)
            if problems:
                raise ParentError(problems[0])
            cast(Differencing, layer).set_parent_locator(new_parent, parent_path)
            layer.flush()
