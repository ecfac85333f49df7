"""pyhv-worker: the one process per running VM that owns its QEMU, storage provider and console."""
