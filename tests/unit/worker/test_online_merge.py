"""The online merge's mirror on real (small) images: writes during and after the copy reach
the parent, and the parent ends up showing exactly what the child shows."""

from __future__ import annotations

import threading
from pathlib import Path

from pyhv.storage import CreateSpec, create_image, open_image
from pyhv.worker.online_merge import MirrorImage, copy_into_target

MiB = 1 << 20


def test_the_parent_shows_the_child_after_a_copy_with_writes_going_on(tmp_path: Path) -> None:
    base, child_path = tmp_path / "base.vhdx", tmp_path / "child.avhdx"
    create_image(base, CreateSpec(size=16 * MiB))
    with open_image(base, writable=True) as image:
        image.write(0, b"b" * 4 * MiB)
    create_image(child_path, CreateSpec(size=0, parent=str(base)))
    child = open_image(child_path, writable=True)
    child.write(MiB, b"c" * 3 * MiB)
    target = open_image(base, writable=True)
    mirror = MirrorImage(child, target)

    def guest() -> None:
        for i in range(64):
            mirror.write((i * 37 % 16) * MiB, bytes([i]) * 4096)

    writer = threading.Thread(target=guest)
    writer.start()
    copied = copy_into_target(mirror)
    writer.join()
    mirror.write(15 * MiB, b"after")
    assert copied >= 3 * MiB
    expected = child.read(0, 16 * MiB)
    assert target.read(0, 16 * MiB) == expected
    mirror.close()
    assert child.closed and not target.closed
    target.close()
    with open_image(base) as merged:
        assert merged.read(0, 16 * MiB) == expected
