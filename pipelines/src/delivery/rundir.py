"""A short, private directory per local environment for its Unix sockets.

A Unix socket path is capped near 100 bytes (HAProxy says "max 97"), so a socket under the state
directory breaks as soon as the checkout sits in a deep path. Sockets live instead in
`$XDG_RUNTIME_DIR` (or the system temp dir) under a name hashed from the state directory: short
whatever the checkout's depth, and the same for every `deliver` that drives this environment.
"""

import hashlib
import os
import stat
import tempfile
from pathlib import Path

MAX_SOCKET_PATH = 97  # HAProxy's limit; the kernel's sun_path is 108 bytes with the NUL


class RunDirError(RuntimeError):
    pass


def path_for(state_dir: Path, base: str | None = None) -> Path:
    root = Path(base or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return root / f"image-delivery-{os.getuid()}-{digest}"


def ensure(directory: Path) -> Path:
    """Create `directory` 0700, or accept it only if it is ours, private and not a symlink:
    under a shared /tmp someone else could have planted it first."""
    try:
        directory.mkdir(mode=0o700)
        return directory
    except FileExistsError:
        info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RunDirError(f"{directory} exists and is not a directory of ours")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise RunDirError(f"{directory} is open to other users (mode {info.st_mode:o})")
    return directory


def socket_path(directory: Path, name: str) -> Path:
    path = directory / name
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise RunDirError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes")
    return path
