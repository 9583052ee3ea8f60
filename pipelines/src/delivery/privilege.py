"""Dropping privileges for the local service processes, as the cluster runs them: unprivileged.

When `deliver` runs as root, the service runs as `run_as_user` (default `nobody`). That user must
reach its code, its interpreter, its storage and its tenants file; these helpers decide where those
live and hand them over. Nothing here starts the service.
"""

import contextlib
import hashlib
import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path

SYSTEM_PYTHONS = ("/usr/bin/python3.11", "/usr/bin/python3", "/usr/local/bin/python3")


def service_user(run_as_user: str) -> str | None:
    """The user to run the service as: `run_as_user` when we are root and it exists."""
    if os.geteuid() != 0 or not run_as_user:
        return None
    try:
        pwd.getpwnam(run_as_user)
    except KeyError:
        return None
    return run_as_user


def traversable_by_others(path: Path) -> bool:
    """True when every existing ancestor of `path` lets any user pass through (o+x)."""
    for part in [path, *path.parents]:
        if part.exists() and not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def service_dir(state_dir: Path, env_name: str, user: str | None) -> Path:
    """The state dir itself, unless the service user could not traverse its ancestors.

    A checkout inside a private directory (CI clones into `mktemp -d`, mode 0700) is out of reach
    for `nobody`; the service's files then live in a world-traversable directory under the system
    temp dir, named after the state dir so that each environment keeps its own.
    """
    if user is None or traversable_by_others(state_dir):
        return state_dir
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"image-delivery-{env_name}-{digest}"


def runtime_python(repo: Path, user: str | None) -> str | None:
    """An interpreter the service user can run, when the repo venv's is out of its reach."""
    if user is None:
        return None
    candidates = [str(repo / ".venv" / "bin" / "python"), *SYSTEM_PYTHONS]
    for index, python in enumerate(candidates):
        try:
            ok = subprocess.run([python, "-c", ""], user=user, capture_output=True).returncode
        except OSError:
            continue
        if ok == 0:
            return None if index == 0 else python
    return None


def hand_over(path: Path, user: str | None) -> None:
    """Create `path` and, once, give the whole tree to `user`; later it creates its own files."""
    path.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    entry = pwd.getpwnam(user)
    if path.stat().st_uid == entry.pw_uid:
        return
    for root, dirs, files in os.walk(path):
        for name in [root, *dirs, *files]:
            # A running service renames its temporary files away under our feet.
            with contextlib.suppress(FileNotFoundError):
                os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid)


def write_private(path: Path, text: str, user: str | None) -> None:
    """Write `text` to a 0600 file owned by `user` (or by us)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
