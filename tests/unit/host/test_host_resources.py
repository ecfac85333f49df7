import os

from pyhv.host.resources import HostResources


def test_detect_matches_this_process() -> None:
    host = HostResources.detect()
    assert host.cores == len(os.sched_getaffinity(0))
    assert host.memory_mib > 32
