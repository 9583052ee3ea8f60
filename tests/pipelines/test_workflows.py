"""GitHub workflows: valid per the vendored schema, thin, pinned, OIDC, one delivery per env."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = ["pull-request.yml", "deliver.yml", "bootstrap.yml"]
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(repo_root: Path, name: str) -> dict[Any, Any]:
    data = yaml.safe_load((repo_root / ".github" / "workflows" / name).read_text())
    assert isinstance(data, dict)
    return data


def steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, body in workflow["jobs"].items() for step in body["steps"]]


def test_workflows_match_the_github_schema(repo_root: Path, tmp_path: Path) -> None:
    files = [str(repo_root / ".github" / "workflows" / n) for n in WORKFLOWS]
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *files,
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Negative control: the same check rejects a broken workflow.
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps: oops\n")
    broken = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(bad),
        ],
        capture_output=True,
        text=True,
    )
    assert broken.returncode != 0


@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_action_is_pinned_by_sha_and_aws_uses_oidc(repo_root: Path, name: str) -> None:
    workflow = load(repo_root, name)
    for job, step in steps(workflow):
        if "uses" in step:
            assert SHA_PIN.match(step["uses"]), f"{job}: {step['uses']} is not pinned by SHA"
        with_ = step.get("with", {})
        assert "aws-access-key-id" not in with_, f"{job}: static AWS keys"
        if "configure-aws-credentials" in step.get("uses", ""):
            assert "role-to-assume" in with_
            assert workflow["jobs"][job]["permissions"]["id-token"] == "write"


def test_deliveries_are_thin_serialised_per_env_and_prod_is_protected(repo_root: Path) -> None:
    workflow = load(repo_root, "deliver.yml")
    assert list(workflow[True]) == ["push"]  # YAML 1.1 reads `on` as True
    jobs = workflow["jobs"]
    assert jobs["deliver-prod"]["needs"] == "deliver-staging"
    for env in ("staging", "prod"):
        job = jobs[f"deliver-{env}"]
        assert job["environment"] == env
        assert job["concurrency"] == {"group": f"deliver-{env}", "cancel-in-progress": False}
        # Private API endpoints: the environment's own runner, inside its VPC.
        assert job["runs-on"] == ["self-hosted", "linux", f"{env}-vpc"]
        assert job["if"] == "vars.DELIVERIES_ENABLED == 'true'"  # on after the bootstrap
        runs = [s["run"] for s in job["steps"] if "run" in s and "deliver" in s["run"]]
        # Only `deliver` calls: the platform change, then the version, one kind each.
        assert len(runs) == 2, runs
        assert runs[0].startswith(f"uv run --locked deliver run --env {env} --platform")
        assert runs[1].startswith(f"uv run --locked deliver run --env {env} --version")
        assert all("$GITHUB_STEP_SUMMARY" in r for r in runs)
    tags = jobs["build"]["steps"][-1]["with"]["tags"]
    assert tags.endswith(":${{ github.sha }}")


def test_pull_requests_test_then_preview_each_env_as_a_comment(repo_root: Path) -> None:
    workflow = load(repo_root, "pull-request.yml")
    jobs = workflow["jobs"]
    assert [s["run"] for s in jobs["test"]["steps"] if "run" in s] == ["make test"]
    assert jobs["preview"]["needs"] == "test"
    # GitHub-hosted runners reach AWS APIs, not private API servers: only the AWS-only layers.
    stacks = jobs["preview"]["strategy"]["matrix"]["stack"]
    assert stacks == ["account", "dev-environment", "staging-environment", "prod-environment"]
    pulumi = [s for s in jobs["preview"]["steps"] if "pulumi/actions" in s.get("uses", "")]
    assert pulumi[0]["with"]["command"] == "preview"
    assert pulumi[0]["with"]["comment-on-pr"] is True


def test_bootstrap_runs_in_each_environment_and_never_beside_a_delivery(repo_root: Path) -> None:
    workflow = load(repo_root, "bootstrap.yml")
    assert workflow[True] == {"workflow_dispatch": None}  # no inputs (checkov CKV_GHA_7)
    job = workflow["jobs"]["up"]
    assert job["strategy"]["matrix"]["env"] == ["dev", "staging", "prod"]
    assert job["environment"] == "${{ matrix.env }}"
    assert job["concurrency"]["group"] == "deliver-${{ matrix.env }}"
    runs = "\n".join(s["run"] for s in job["steps"] if "run" in s)
    assert "${{" not in runs  # values reach the shell through env
    assert runs.index('"$ENVIRONMENT-platform"') < runs.index('"$ENVIRONMENT-service"')
    # Re-running it never moves a running service to another version outside a canary.
    assert runs.index("stack output stableVersion") < runs.index("config set")
