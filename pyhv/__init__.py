"""pyhv: a Hyper-V-style virtualization host for Linux."""

__version__ = "0.1.0"
