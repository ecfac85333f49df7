"""Facts about the virtualization host: CPU, accelerator, QEMU, firmware, cgroups, network."""
