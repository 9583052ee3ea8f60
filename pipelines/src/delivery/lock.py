"""One delivery per environment at a time: an exclusive, non-blocking file lock.

The lock file holds the holder's pid so `deliver abort` can ask a running delivery to stop. The
kernel drops the lock when the holder dies, so a crash never leaves a stale lock behind.
`held_by` only looks (at /proc/locks): a read-only command never takes, or creates, the lock.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class BusyError(RuntimeError):
    def __init__(self, env: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"another delivery to {env!r} is running ({who}); refusing to start")
        self.pid = pid


def holder(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def held_by(path: Path, locks: Path = Path("/proc/locks")) -> int | None:
    """The pid holding the delivery lock at `path`, or None when no one holds it."""
    try:
        info = path.stat()
        table = locks.read_text()
    except FileNotFoundError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:131 0 EOF"; waiters are listed with "->".
        cols = line.split()
        if len(cols) >= 6 and cols[1] == "FLOCK" and cols[5] == device:
            return holder(path) or int(cols[4])
    return None


@contextlib.contextmanager
def delivery_lock(path: Path, env: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(env, holder(path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
