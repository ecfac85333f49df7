"""pyhvd, the management service: the one place that decides what happens to VMs."""
