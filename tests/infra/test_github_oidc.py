"""GitHub OIDC trust, derived from the workflows: every job that assumes a role presents the
subject GitHub documents for it, and each role trusts exactly the subjects of the jobs that
assume it. Sessions outlive the longest delivery the environment's policy allows."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_harness import Evaluation, Recorded

Estate = dict[str, Evaluation]
ROLE_VARIABLE = re.compile(r"^\$\{\{\s*vars\.(\w+)\s*\}\}")
SUB = "token.actions.githubusercontent.com:sub"


def _workflows(repo_root: Path) -> dict[str, dict[Any, Any]]:
    return {
        p.name: yaml.safe_load(p.read_text())
        for p in sorted((repo_root / ".github" / "workflows").glob("*.yml"))
    }


def _environments(job: dict[str, Any]) -> list[str]:
    """The GitHub environments a job can run in (a matrix expression: each of its values)."""
    env = job.get("environment")
    if env is None:
        return []
    env = env["name"] if isinstance(env, dict) else str(env)
    match = re.fullmatch(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", env)
    if match:
        return [str(v) for v in job["strategy"]["matrix"][match[1]]]
    return [env]


def _contexts(workflow: dict[Any, Any], job: dict[str, Any]) -> list[tuple[str, str]]:
    """(GitHub environment, subject context) pairs per GitHub's "Example subject claims": an
    environment wins; else a pull request; else the pushed branch's ref."""
    envs = _environments(job)
    if envs:
        return [(e, f"environment:{e}") for e in envs]
    events = workflow[True]  # YAML 1.1 reads the key `on` as True
    if "pull_request" in events:
        return [("", "pull_request")]
    return [("", f"ref:refs/heads/{b}") for b in events["push"]["branches"]]


def expected_trust(repo_root: Path, repository: str) -> dict[tuple[str, str], set[str]]:
    """(variable, GitHub environment) -> the subjects of the jobs assuming that role."""
    out: dict[tuple[str, str], set[str]] = {}
    for workflow in _workflows(repo_root).values():
        for job in workflow["jobs"].values():
            for step in job.get("steps", []):
                if "configure-aws-credentials" not in step.get("uses", ""):
                    continue
                match = ROLE_VARIABLE.match(step["with"]["role-to-assume"])
                assert match, step["with"]["role-to-assume"]
                for env, context in _contexts(workflow, job):
                    out.setdefault((match[1], env), set()).add(f"repo:{repository}:{context}")
    return out


def _roles(estate: Estate) -> dict[tuple[str, str], Recorded]:
    return {
        (r.inputs["tags"]["github-variable"], r.inputs["tags"]["github-environment"]): r
        for r in estate["account"].resources
        if r.type == "aws:iam/role:Role" and "github-variable" in r.inputs.get("tags", {})
    }


def test_each_role_trusts_exactly_the_jobs_that_assume_it(estate: Estate, repo_root: Path) -> None:
    account = yaml.safe_load((repo_root / "environments" / "Pulumi.account.yaml").read_text())
    repository = account["config"]["image-platform:githubRepository"]
    expected = expected_trust(repo_root, repository)
    assert ("AWS_DELIVER_ROLE_ARN", "prod") in expected
    roles = _roles(estate)
    # A job resolves vars.X from its GitHub environment first, then from the repository.
    for (variable, env), subjects in expected.items():
        role = roles.get((variable, env)) or roles.get((variable, ""))
        assert role is not None, (variable, env)
        trust = json.loads(role.inputs["assumeRolePolicy"])
        (statement,) = trust["Statement"]
        trusted = statement["Condition"]["StringEquals"][SUB]
        trusted = {trusted} if isinstance(trusted, str) else set(trusted)
        if roles.get((variable, env)) is role:
            assert trusted == subjects, (variable, env)
        else:
            assert subjects <= trusted, (variable, env)
    unused = set(roles) - set(expected)
    assert unused == set(), "roles no workflow job assumes"


def test_immutable_subjects_when_the_repository_ids_are_known() -> None:
    # Repositories created after 2026-07-15 present OWNER@OWNER_ID/REPO@REPO_ID.
    from infra.ci_identity import subject

    assert subject("o/r", "environment:prod") == "repo:o/r:environment:prod"
    assert subject("o/r", "pull_request", 12, 34) == "repo:o@12/r@34:pull_request"


def _longest_delivery_seconds(repo_root: Path, env: str, up_seconds: int) -> int:
    """Every step baked with every extension, plus one `pulumi up` per step, the start, the
    promotion and the platform delivery before it."""
    policy = yaml.safe_load((repo_root / "environments" / f"delivery.{env}.yaml").read_text())
    canary = policy["canary"]
    steps = canary["steps"]
    bakes = sum(int(s["bake_seconds"]) for s in steps)
    extensions = len(steps) * int(canary["max_extensions"]) * int(canary["extension_seconds"])
    return bakes + extensions + (len(steps) + 3) * up_seconds


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_sessions_outlive_the_longest_delivery(estate: Estate, repo_root: Path, env: str) -> None:
    # One `up` can wait as long as the slowest Helm release's timeout.
    up_seconds = max(
        int(r.inputs["timeout"])
        for r in estate[f"{env}-platform"].resources
        if r.type == "kubernetes:helm.sh/v3:Release"
    )
    longest = _longest_delivery_seconds(repo_root, env, up_seconds)
    job = _workflows(repo_root)["deliver.yml"]["jobs"][f"deliver-{env}"]
    (step,) = [s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", "")]
    # configure-aws-credentials asks for 1 hour unless told otherwise.
    duration = int(step["with"].get("role-duration-seconds", 3600))
    assert duration >= longest, (env, duration, longest)
    role = _roles(estate)[("AWS_DELIVER_ROLE_ARN", env)]
    # IAM refuses a session longer than the role's MaxSessionDuration (default 3600).
    assert int(role.inputs.get("maxSessionDuration", 3600)) >= duration
