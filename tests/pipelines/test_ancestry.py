"""Roll forward means forward, against a real temporary git repository.

History used (main: a1 -> a2 -> a3; side branches off a1: s1):

    a1 --- a2 --- a3
      \\
       s1
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from delivery.ancestry import (
    Ancestry,
    Override,
    Relation,
    ancestry_from_git,
    check_forward,
    decide,
    stable_commit,
)
from delivery.ledger import DeliveryView, Finished, Outcome, Subject


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    )
    return out.stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / f"{name}.txt").write_text(name)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", f"change {name}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    repo = tmp_path_factory.mktemp("repo")
    git(repo, "init", "-q", "-b", "main")
    c = {"a1": commit(repo, "a1"), "a2": commit(repo, "a2"), "a3": commit(repo, "a3")}
    git(repo, "checkout", "-q", "-b", "side", c["a1"])
    c["s1"] = commit(repo, "s1")
    git(repo, "checkout", "-q", "main")
    return repo, c


def test_the_old_head_is_refused_over_head(history: tuple[Path, dict[str, str]]) -> None:
    repo, c = history
    decision = check_forward(repo, c["a2"], c["a3"])
    assert not decision.allowed
    assert decision.relation is Relation.BACKWARD
    # The reason names what would be lost, as git tells it.
    assert "change a3" in decision.reason
    assert "1 commit" in decision.reason


def test_forward_same_and_first_are_allowed(history: tuple[Path, dict[str, str]]) -> None:
    repo, c = history
    assert check_forward(repo, c["a3"], c["a1"]).relation is Relation.FORWARD
    assert check_forward(repo, c["a3"], c["a1"]).allowed
    assert check_forward(repo, c["a3"], c["a3"]).allowed
    assert check_forward(repo, c["a3"][:8], c["a3"]).relation is Relation.SAME
    assert check_forward(repo, c["a1"], None).allowed


def test_a_diverged_commit_is_refused(history: tuple[Path, dict[str, str]]) -> None:
    repo, c = history
    decision = check_forward(repo, c["s1"], c["a3"])
    assert not decision.allowed
    assert decision.relation is Relation.DIVERGED
    assert "2 commits" in decision.reason  # a2 and a3 are not in s1


def test_an_override_allows_it_and_is_recorded(history: tuple[Path, dict[str, str]]) -> None:
    repo, c = history
    override = Override("a3 corrupts uploads; a fix is hours away", "alice")
    decision = check_forward(repo, c["a2"], c["a3"], override)
    assert decision.allowed
    record = decision.record()
    assert record["override_reason"] == "a3 corrupts uploads; a fix is hours away"
    assert record["override_by"] == "alice"
    assert record["relation"] == "backward"


def test_an_unused_override_is_not_recorded(history: tuple[Path, dict[str, str]]) -> None:
    repo, c = history
    decision = check_forward(repo, c["a3"], c["a2"], Override("just in case", "bob"))
    assert decision.allowed
    assert "override_reason" not in decision.record()


@pytest.mark.parametrize(("reason", "by"), [("", "alice"), ("  ", "alice"), ("why", "")])
def test_an_override_needs_a_reason_and_a_name(reason: str, by: str) -> None:
    with pytest.raises(ValueError, match="needs"):
        Override(reason, by)


def test_a_commit_missing_from_the_clone_is_refused(history: tuple[Path, dict[str, str]]) -> None:
    repo, c = history
    decision = check_forward(repo, "f" * 40, c["a3"])
    assert not decision.allowed
    assert decision.relation is Relation.UNKNOWN
    assert "candidate commit not in" in decision.reason


def test_a_shallow_clone_says_how_to_fix_it(
    history: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    repo, c = history
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow)],
        check=True,
        capture_output=True,
    )
    facts = ancestry_from_git(shallow, c["a3"], c["a1"])
    assert facts.relation is Relation.UNKNOWN
    assert "fetch-depth" in facts.detail
    assert not decide(facts).allowed


def test_versions_without_a_commit_are_not_checked() -> None:
    decision = decide(Ancestry(None, "abc", Relation.UNKNOWN, "no commit recorded for a version"))
    assert decision.allowed
    assert "not checked" in decision.reason


def _view(version: str, commit: str, outcome: Outcome) -> DeliveryView:
    subject = Subject(version, commit=commit)
    done = Finished(f"d-{version}", "t", "", subject, "", outcome, "why")
    return DeliveryView(f"d-{version}", "t", subject, (), done)


def test_stable_commit_comes_from_its_promotion_in_the_ledger() -> None:
    history = [
        _view("v1", "c1", Outcome.PROMOTED),
        _view("v2", "c2", Outcome.ABORTED),
        _view("v3", "c3", Outcome.PROMOTED),
    ]
    assert stable_commit(history, "v3") == "c3"
    assert stable_commit(history, "v1") == "c1"
    assert stable_commit(history, "v2") is None  # never promoted: not stable by the ledger
    assert stable_commit(history, "") is None
    assert stable_commit([_view("w", "", Outcome.PROMOTED)], "w") is None
