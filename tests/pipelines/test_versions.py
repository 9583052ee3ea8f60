"""Local versions: labels for the working tree, commits and named versions."""

from pathlib import Path

import pytest
from delivery import versions
from delivery.config import LocalVersion
from delivery.target import TargetError


def test_version_labels(repo_root: Path) -> None:
    info, source = versions.resolve(repo_root, "worktree", {}, clock="2026-11-23T15:04:05+00:00")
    assert info.version.endswith("-wt20261123T150405")
    assert len(info.commit) == 40
    assert source.source == "worktree"
    named, spec = versions.resolve(repo_root, "bad", {"bad": LocalVersion("worktree", {"A": "1"})})
    assert named.version == "bad"
    assert spec.env == {"A": "1"}
    with pytest.raises(TargetError, match="expected worktree"):
        versions.resolve(repo_root, "no such; thing", {})
    with pytest.raises(TargetError, match="git rev-parse"):
        versions.resolve(repo_root, "0000000deadbeef", {})
