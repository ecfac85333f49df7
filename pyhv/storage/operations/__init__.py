"""Whole-disk operations built on :class:`~pyhv.storage.image.DiskImage`: the engines behind
``pyhv vhd convert``, ``merge``, ``check``, ``resize``, ``compact`` and ``set-parent``.

They use images only through the protocol, so each works for every format and chain.
"""

from __future__ import annotations

from pyhv.storage.operations.check import check_chain
from pyhv.storage.operations.compact import compact_image
from pyhv.storage.operations.convert import convert_image
from pyhv.storage.operations.merge import merge_image
from pyhv.storage.operations.progress import Progress
from pyhv.storage.operations.relink import set_parent
from pyhv.storage.operations.resize import resize_image

__all__ = [
    "Progress",
    "check_chain",
    "compact_image",
    "convert_image",
    "merge_image",
    "resize_image",
    "set_parent",
]
