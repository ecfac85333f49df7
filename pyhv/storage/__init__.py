"""Disk images: VHD, VHDX and raw, differencing chains, and the operations on them.

``open_image(path, writable=False)`` is the one entry point; see :mod:`pyhv.storage.image` for
the protocol the returned object follows.
"""
