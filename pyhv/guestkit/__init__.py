"""A small Linux guest for demos and tests, built from Debian packages by pyhv itself.

``build_kit()`` makes (or finds in the cache) the kernel, initramfs and VHDX root disk;
``kit_paths()`` returns the kit last built; a booted guest prints ``READY_LINE`` on its serial
console once its guest agent runs.
"""

from pyhv.guestkit.build import CMDLINE, READY_LINE, KitPaths, build_kit, kit_paths

__all__ = ["CMDLINE", "READY_LINE", "KitPaths", "build_kit", "kit_paths"]
