"""Local versions: labels for the working tree, commits and named versions."""

import difflib
import subprocess
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


def test_a_worktree_snapshot_runs_the_service_with_its_contracts(
    repo_root: Path, tmp_path: Path
) -> None:
    info, source = versions.resolve(repo_root, "worktree", {}, clock="2026-11-23T15:04:05+00:00")
    launch = versions.materialise(repo_root, tmp_path / "versions", info, source)
    code = Path(launch.env["PYTHONPATH"])
    assert (code / "image_service" / "__main__.py").is_file()
    assert (code / "image_contracts" / "tenants.py").is_file()  # not only via the venv
    # The snapshot imports on its own: nothing from the checkout is needed to start it.
    probe = subprocess.run(
        [launch.argv[0], "-I", "-c", "import sys; sys.path[:0] = [sys.argv[1]]; "
         "import image_contracts, image_service; print(image_contracts.__file__)", str(code)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.startswith(str(code))


def _diff(repo_root: Path, rel: str, old: str, new: str) -> str:
    text = (repo_root / rel).read_text()
    assert old in text
    lines = difflib.unified_diff(
        text.splitlines(keepends=True),
        text.replace(old, new, 1).splitlines(keepends=True),
        f"a/{rel}",
        f"b/{rel}",
    )
    return "".join(lines)


def test_a_patched_version_runs_the_snapshot_with_the_patch(
    repo_root: Path, tmp_path: Path
) -> None:
    rel = "service/src/image_service/caching.py"
    patch = tmp_path / "short.diff"
    patch.write_text(_diff(repo_root, rel, "TRIAL_MAX_AGE = 300", "TRIAL_MAX_AGE = 7"))
    spec = {"short": LocalVersion("worktree", {}, str(patch))}
    info, source = versions.resolve(repo_root, "short", spec)
    launch = versions.materialise(repo_root, tmp_path / "versions", info, source)
    snapshot = Path(launch.env["PYTHONPATH"]) / "image_service" / "caching.py"
    assert "TRIAL_MAX_AGE = 7 " in snapshot.read_text()
    assert "TRIAL_MAX_AGE = 300 " in (repo_root / rel).read_text()  # the checkout is untouched

    stale = tmp_path / "stale.diff"
    stale.write_text(_diff(repo_root, rel, "TRIAL_MAX_AGE = 300", "X = 1").replace("300", "301"))
    bad = {"bad": LocalVersion("worktree", {}, str(stale))}
    info, source = versions.resolve(repo_root, "bad", bad)
    with pytest.raises(TargetError, match="does not apply"):
        versions.materialise(repo_root, tmp_path / "versions", info, source)
