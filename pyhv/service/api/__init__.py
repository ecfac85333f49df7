"""The REST API: each module parses one resource's requests into commands for the manager."""
