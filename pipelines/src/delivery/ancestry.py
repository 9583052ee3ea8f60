"""Rolling forward means forward: refuse a candidate whose commit is older than stable's.

A commit that is a strict ancestor of stable's commit would, once promoted, take away changes
users already have: a rollback by the back door, decided by nobody. A commit on a branch that
does not contain stable's commit (diverged) drops stable's changes in the same way. Both are
refused unless an explicit override gives a reason, which the caller records in the ledger.

Functional core: `decide()` over `Ancestry` facts. Shell: `ancestry_from_git()` asks git
(`merge-base --is-ancestor`), and `check_forward()` does both.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from delivery.ledger import DeliveryView, Outcome


class Relation(StrEnum):
    FIRST = "first"  # no commit for stable: nothing stable yet, or it predates the ledger
    SAME = "same"  # the same commit (a rebuild or a reconfigured version)
    FORWARD = "forward"  # stable's commit is an ancestor of the candidate's
    BACKWARD = "backward"  # the candidate's commit is an ancestor of stable's
    DIVERGED = "diverged"  # neither contains the other
    UNKNOWN = "unknown"  # a commit is missing (no commit recorded, or not in this clone)


@dataclass(frozen=True)
class Ancestry:
    candidate: str | None
    stable: str | None
    relation: Relation
    detail: str = ""  # why it is unknown, or the commits stable has that the candidate lacks


@dataclass(frozen=True)
class Override:
    """A person's explicit, recorded permission to deliver a non-forward version."""

    reason: str
    by: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("an override needs a reason")
        if not self.by.strip():
            raise ValueError("an override needs the name of who gave it")


@dataclass(frozen=True)
class ForwardDecision:
    allowed: bool
    relation: Relation
    reason: str
    override: Override | None = None  # set when the override is what allowed it

    def record(self) -> dict[str, str | bool]:
        """The ledger fields: what was decided, and on whose word."""
        out: dict[str, str | bool] = {
            "allowed": self.allowed,
            "relation": self.relation.value,
            "reason": self.reason,
        }
        if self.override is not None:
            out["override_reason"] = self.override.reason
            out["override_by"] = self.override.by
        return out


def _short(commit: str | None) -> str:
    return "?" if commit is None else commit[:12]


def decide(facts: Ancestry, override: Override | None = None) -> ForwardDecision:
    """Allow first, same-commit, forward and unknown-because-unrecorded; refuse the rest
    unless overridden. An override on an allowed delivery is not recorded: nothing used it."""
    c, s = _short(facts.candidate), _short(facts.stable)
    rel = facts.relation
    if rel is Relation.FIRST:
        return ForwardDecision(
            True,
            rel,
            "no commit recorded for stable (nothing stable yet, or it predates the ledger)",
        )
    if rel is Relation.SAME:
        return ForwardDecision(True, rel, f"same commit as stable ({c})")
    if rel is Relation.FORWARD:
        return ForwardDecision(True, rel, f"{c} descends from stable's {s}")
    if rel is Relation.UNKNOWN and (facts.candidate is None or facts.stable is None):
        # A worktree snapshot or an image built outside git: there is no history to compare.
        return ForwardDecision(True, rel, f"ancestry not checked: {facts.detail}")
    refusal = {
        Relation.BACKWARD: f"{c} is an ancestor of stable's {s}: delivering it rolls back "
        f"{facts.detail or 'stable changes'}",
        Relation.DIVERGED: f"{c} does not contain stable's {s}: delivering it drops "
        f"{facts.detail or 'stable changes'}",
        Relation.UNKNOWN: f"cannot tell whether {c} descends from stable's {s}: {facts.detail}",
    }[rel]
    if override is not None:
        return ForwardDecision(
            True, rel, f"{refusal}; allowed by {override.by}: {override.reason}", override
        )
    fix = "deliver a commit that contains stable's, or give an override with a reason"
    return ForwardDecision(False, rel, f"{refusal} ({fix})")


def stable_commit(history: Sequence[DeliveryView], stable_version: str) -> str | None:
    """The commit stable runs, as the ledger recorded it when that version was promoted
    (None when nothing is stable, or the ledger never promoted it with a commit)."""
    if not stable_version:
        return None
    for view in reversed(history):
        if view.outcome is Outcome.PROMOTED and view.subject.version == stable_version:
            return view.subject.commit or None
    return None


# --- git -----------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )


def _resolve(repo: Path, commit: str) -> str | None:
    out = _git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    return out.stdout.strip() if out.returncode == 0 else None


def _is_ancestor(repo: Path, older: str, newer: str) -> bool:
    out = _git(repo, "merge-base", "--is-ancestor", older, newer)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"git merge-base --is-ancestor: {out.stderr.strip()}")
    return out.returncode == 0


def _missing(repo: Path, have: str, want: str) -> str:
    """'N commits (abc123 subject, ...)' that `want` has and `have` lacks."""
    out = _git(repo, "log", "--format=%h %s", f"{have}..{want}")
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if not lines:
        return "no commits"
    shown = "; ".join(lines[:3]) + ("; ..." if len(lines) > 3 else "")
    return f"{len(lines)} commit{'s' if len(lines) != 1 else ''} ({shown})"


def ancestry_from_git(repo: Path, candidate: str | None, stable: str | None) -> Ancestry:
    """The relation between two commits, as this clone's history says."""
    if stable is None and candidate is not None:
        return Ancestry(candidate, None, Relation.FIRST)
    if candidate is None or stable is None:
        return Ancestry(candidate, stable, Relation.UNKNOWN, "no commit recorded for a version")
    full_c, full_s = _resolve(repo, candidate), _resolve(repo, stable)
    missing = [name for name, full in (("candidate", full_c), ("stable", full_s)) if full is None]
    if full_c is None or full_s is None:
        shallow = _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        hint = " (shallow clone: fetch the full history, e.g. checkout fetch-depth: 0)"
        return Ancestry(
            candidate,
            stable,
            Relation.UNKNOWN,
            f"{' and '.join(missing)} commit not in {repo}" + (hint if shallow else ""),
        )
    if full_c == full_s:
        return Ancestry(full_c, full_s, Relation.SAME)
    if _is_ancestor(repo, full_s, full_c):
        return Ancestry(full_c, full_s, Relation.FORWARD)
    lost = _missing(repo, full_c, full_s)
    if _is_ancestor(repo, full_c, full_s):
        return Ancestry(full_c, full_s, Relation.BACKWARD, lost)
    return Ancestry(full_c, full_s, Relation.DIVERGED, lost)


def check_forward(
    repo: Path, candidate: str | None, stable: str | None, override: Override | None = None
) -> ForwardDecision:
    """What the orchestrator calls before the canary starts."""
    return decide(ancestry_from_git(repo, candidate, stable), override)
