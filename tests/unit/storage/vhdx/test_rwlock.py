"""SharedExclusiveLock: shares run together, block moves run alone, stamps see moves."""

from __future__ import annotations

import threading

from pyhv.storage.vhdx.rwlock import SharedExclusiveLock


def test_exclusive_waits_for_every_share_and_shares_wait_for_it() -> None:
    rw = SharedExclusiveLock()
    events: list[str] = []
    moving = threading.Event()

    def move() -> None:
        with rw.exclusive():
            events.append("move")
            moving.set()

    with rw.shared(), rw.shared():  # shares nest and run together
        mover = threading.Thread(target=move)
        mover.start()
        assert not moving.wait(0.1)  # held back by the shares
        events.append("shares done")
    mover.join(30)
    assert events == ["shares done", "move"]

    def read() -> None:
        with rw.shared():
            events.append("read")

    with rw.exclusive():
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(0.1)
        assert reader.is_alive()  # waits for the move
        events.append("moved")
    reader.join(30)
    assert events[-2:] == ["moved", "read"]


def test_the_mover_may_take_shares_inside_its_own_move() -> None:
    rw = SharedExclusiveLock()
    with rw.exclusive(), rw.shared(), rw.exclusive():
        pass
    with rw.exclusive():  # nothing was left counted
        pass


def test_stamps_see_moves() -> None:
    rw = SharedExclusiveLock()
    stamp = rw.stamp()
    assert stamp is not None and rw.unchanged(stamp)
    with rw.shared():  # shares are no moves
        assert rw.unchanged(stamp)
    with rw.exclusive():
        assert rw.stamp() is None and not rw.unchanged(stamp)
    assert not rw.unchanged(stamp)  # a move came and went
    later = rw.stamp()
    assert later is not None and rw.unchanged(later)
