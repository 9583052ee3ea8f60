"""Privilege dropping: where the unprivileged service's files live, and who owns them."""

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery import privilege

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory every user can pass through (pytest's tmp_path sits under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="privilege-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_private_ancestor_makes_a_path_unreachable_for_others(open_tmp: Path) -> None:
    open_dir = open_tmp / "open" / "state"
    open_dir.mkdir(parents=True)
    (open_tmp / "open").chmod(0o755)
    assert privilege.traversable_by_others(open_dir)
    (open_tmp / "open").chmod(0o700)
    assert not privilege.traversable_by_others(open_dir)


def test_service_files_move_out_of_a_private_checkout_only_for_another_user(
    open_tmp: Path,
) -> None:
    state = open_tmp / "private" / "state"
    state.mkdir(parents=True)
    (open_tmp / "private").chmod(0o700)
    assert privilege.service_dir(state, "local", None) == state  # we run it: no move needed
    moved = privilege.service_dir(state, "local", "nobody")
    assert moved != state
    assert moved.name.startswith("image-delivery-local-")
    assert privilege.service_dir(state, "local", "nobody") == moved  # stable per state dir
    (open_tmp / "private").chmod(0o755)
    state.chmod(0o755)
    assert privilege.service_dir(state, "local", "nobody") == state


@needs_root
def test_private_files_and_handed_over_trees_belong_to_the_service_user(tmp_path: Path) -> None:
    secret = tmp_path / "tenants.toml"
    privilege.write_private(secret, "x", "nobody")
    info = secret.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == 65534
    tree = tmp_path / "storage"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "f").write_text("x")
    privilege.hand_over(tree, "nobody")
    assert {p.stat().st_uid for p in [tree, *tree.rglob("*")]} == {65534}


def test_no_service_user_unless_we_are_root() -> None:
    user = privilege.service_user("nobody")
    assert user == ("nobody" if os.geteuid() == 0 else None)
    assert privilege.service_user("") is None
    assert privilege.service_user("no-such-user-here") is None
