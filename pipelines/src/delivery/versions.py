"""Local versions: the current working tree, or a git commit in its own worktree and venv.

- `worktree`: a snapshot of `service/src` (and `contracts/src`, which it imports) copied at
  delivery time, run with the repo's venv. Each snapshot is a new artifact (`<sha7>-wt<UTC
  time>`), like an image built from a dirty tree, so baseline and stable keep running exactly
  the code they were started with.
- a commit-ish: `git worktree add --detach` plus `uv sync --locked --package image-service`, so the
  version runs with its own locked dependencies.
- a name from the policy's `versions:` map: one of the above plus extra environment variables
  (fault injection for the end-to-end tests).
"""

import datetime as dt
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from delivery.config import LocalVersion
from delivery.target import TargetError, VersionInfo

LABEL = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Workspace members whose code a `worktree` snapshot carries: the service and its contracts.
SNAPSHOT_MEMBERS = ("service", "contracts")


@dataclass(frozen=True)
class Launch:
    """How to start one version of the service."""

    version: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as exc:
        raise TargetError(f"git {' '.join(args)}: {exc.stderr.strip()}") from exc
    return out.stdout.strip()


def head(repo: Path) -> str:
    """The commit the checkout is at."""
    return git(repo, "rev-parse", "HEAD")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def resolve(
    repo: Path, spec: str, named: Mapping[str, LocalVersion], *, clock: str | None = None
) -> tuple[VersionInfo, LocalVersion]:
    """The label, commit and commit time for what the user typed, plus how to build it."""
    if spec in named:
        source = named[spec]
        if source.source == "worktree":
            head = git(repo, "rev-parse", "HEAD")
            commit_time = git(repo, "show", "-s", "--format=%cI", "HEAD")
        else:
            head = git(repo, "rev-parse", "--verify", f"{source.source}^{{commit}}")
            commit_time = git(repo, "show", "-s", "--format=%cI", head)
        return VersionInfo(spec, head, commit_time), source
    if spec == "worktree":
        head = git(repo, "rev-parse", "HEAD")
        stamp = (clock or now_iso()).replace("-", "").replace(":", "")[:15]
        label = f"{head[:7]}-wt{stamp}"
        # A dirty tree's changes are newer than its commit: lead time starts now for them.
        dirty = bool(git(repo, "status", "--porcelain", "--", "service"))
        commit_time = now_iso() if dirty else git(repo, "show", "-s", "--format=%cI", "HEAD")
        return VersionInfo(label, head, commit_time), LocalVersion("worktree")
    if not LABEL.fullmatch(spec):
        raise TargetError(f"version {spec!r}: expected worktree, a commit, or a named version")
    commit = git(repo, "rev-parse", "--verify", f"{spec}^{{commit}}")
    commit_time = git(repo, "show", "-s", "--format=%cI", commit)
    return VersionInfo(commit[:12], commit, commit_time), LocalVersion(commit)


def _uv() -> list[str]:
    uv = shutil.which("uv")
    return [uv] if uv else ["python3", "-m", "uv"]


def _uv_sync(cwd: Path, python: str | None, env_dir: Path | None, what: str) -> None:
    argv = [*_uv(), "sync", "--locked", "--package", "image-service", "--no-dev", "--quiet"]
    if python:
        argv += ["--python", python]
    env = {
        k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    }
    if env_dir is not None:
        env["UV_PROJECT_ENVIRONMENT"] = str(env_dir)
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise TargetError(f"uv sync for {what} failed:\n{result.stderr[-2000:]}")


def _apply(patch: Path, snapshot: Path) -> None:
    """Apply a diff written against the repository (a/service/src/...) to a snapshot (src/...)."""
    try:
        subprocess.run(
            ["git", "apply", "-p2", str(patch.resolve())],
            check=True,
            capture_output=True,
            text=True,
            cwd=snapshot,
        )
    except subprocess.CalledProcessError as exc:
        raise TargetError(f"patch {patch} does not apply: {exc.stderr.strip()}") from exc
    if not any(snapshot.rglob("*.rej")) and patch.read_text().strip():
        return
    raise TargetError(f"patch {patch} is empty or left rejects in {snapshot}")


def materialise(
    repo: Path,
    versions_dir: Path,
    info: VersionInfo,
    source: LocalVersion,
    runtime_python: str | None = None,
) -> Launch:
    """Build (once) what it takes to run this version, and say how to start it.

    `runtime_python` is an interpreter the service user can execute, when the repo's own venv
    interpreter is not (e.g. it lives under /root and the service runs as `nobody`).
    """
    target = versions_dir / info.version
    if source.source == "worktree":
        if not (target / "src" / "image_service").is_dir():
            tmp = versions_dir / f".{info.version}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            # The service and the workspace members it imports, so the snapshot runs even where
            # the venv's editable installs point into a checkout the service user cannot read.
            for member in SNAPSHOT_MEMBERS:
                shutil.copytree(
                    repo / member / "src",
                    tmp / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    dirs_exist_ok=True,
                )
            if source.patch:
                _apply(Path(source.patch), tmp)
            tmp.replace(target)
        venv = repo / ".venv"
        if runtime_python is not None:
            venv = versions_dir / "runtime-venv"
            if not (venv / "bin" / "python").exists():
                _uv_sync(repo, runtime_python, venv, "the service runtime")
        return Launch(
            info.version,
            (str(venv / "bin" / "python"), "-m", "image_service"),
            {**source.env, "PYTHONPATH": str(target / "src"), "PYTHONDONTWRITEBYTECODE": "1"},
        )
    if not (target / ".venv" / "bin" / "python").exists():
        if not target.exists():
            git(repo, "worktree", "add", "--detach", str(target), info.commit)
        _uv_sync(target, runtime_python, None, info.version)
    return Launch(
        info.version, (str(target / ".venv" / "bin" / "python"), "-m", "image_service"), source.env
    )


def remove(repo: Path, versions_dir: Path, version: str) -> None:
    target = versions_dir / version
    if (target / ".git").exists():
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(target)],
            capture_output=True,
        )
    shutil.rmtree(target, ignore_errors=True)
