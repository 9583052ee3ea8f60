"""One delivery per environment: the lock, and looking at it without taking it."""

import os
from pathlib import Path

import pytest
from delivery import lock


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "deliver-t.lock"
    with (
        lock.delivery_lock(path, "t"),
        pytest.raises(lock.BusyError, match="another delivery to 't'") as busy,
        lock.delivery_lock(path, "t"),
    ):
        pass
    assert busy.value.pid == os.getpid()
    with lock.delivery_lock(path, "t"):  # released on exit
        pass


def test_held_by_only_looks(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "deliver-t.lock"
    assert lock.held_by(path) is None
    assert not path.parent.exists()  # looking created nothing
    with lock.delivery_lock(path, "t"):
        assert lock.held_by(path) == os.getpid()
    assert lock.held_by(path) is None  # the file stays, the lock does not
