"""Unix sockets live in a short private directory, however deep the checkout is."""

import os
from pathlib import Path

import pytest
from delivery import rundir


def test_the_socket_path_stays_short_for_a_deep_state_dir(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 8) / ".state" / "local"
    assert len(str(deep)) > 200
    directory = rundir.path_for(deep, base="/tmp")
    assert len(str(rundir.socket_path(directory, "haproxy.sock"))) <= rundir.MAX_SOCKET_PATH
    assert rundir.path_for(deep, base="/tmp") == directory  # every deliver finds the same one
    assert rundir.path_for(deep / "other", base="/tmp") != directory  # each env its own


def test_the_directory_is_private_and_must_be_ours(tmp_path: Path) -> None:
    made = rundir.ensure(tmp_path / "run")
    assert made.stat().st_mode & 0o777 == 0o700
    assert rundir.ensure(made) == made  # idempotent
    made.chmod(0o755)
    with pytest.raises(rundir.RunDirError, match="open to other users"):
        rundir.ensure(made)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "planted").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(rundir.RunDirError, match="not a directory of ours"):
        rundir.ensure(tmp_path / "planted")
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(rundir.RunDirError, match="not a directory of ours"):
            rundir.ensure(theirs)


def test_a_socket_path_over_the_limit_is_refused() -> None:
    with pytest.raises(rundir.RunDirError, match="longer than 97 bytes"):
        rundir.socket_path(Path("/" + "d" * 90), "haproxy.sock")
