"""Infrastructure scans: hadolint and checkov (dockerfile, github_actions) report 0 failed checks,
or only the justified skips listed here and in docs/reliability.md.

checkov runs from its own cached tool environment (`uv tool run --from checkov==VERSION`, as in
tests/infra/test_checkov.py), never from the project's venv. Each scanner also gets a bad input in
the same run, so a scanner that silently checks nothing fails the test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from reliability_kit import record

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "service" / "Dockerfile"
WORKFLOWS = ROOT / ".github" / "workflows"
CHECKOV = "checkov==3.3.30"
UV = shutil.which("uv")
HADOLINT = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
# check id -> why it does not apply; each must also be listed in docs/reliability.md. Empty:
# the Dockerfile's base images became literal pinned tags, so CKV_DOCKER_7 no longer needs a skip.
JUSTIFIED: dict[str, str] = {}
BAD_DOCKERFILE = "FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\n"
BAD_WORKFLOW = """name: negative
on:
  pull_request_target:
permissions: write-all
jobs:
  b:
    runs-on: ubuntu-latest
    steps:
      - run: curl -sSL http://example.invalid/x | bash
"""


def hadolint(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [HADOLINT, "--failure-threshold", "style", "-f", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return findings


def test_hadolint_every_severity(tmp_path: Path) -> None:
    if not DOCKERFILE.exists():
        pytest.skip("service/Dockerfile does not exist yet")
    ours = hadolint(DOCKERFILE)
    bad = tmp_path / "Dockerfile"
    bad.write_text(BAD_DOCKERFILE)
    negative = hadolint(bad)
    ignores = re.findall(r"hadolint ignore=([A-Z0-9,]+)", DOCKERFILE.read_text())
    record("hadolint", findings=len(ours), inline_ignores=ignores, negative_control=len(negative))
    assert negative, "hadolint found nothing in a bad Dockerfile: it is not really running"
    assert ours == []
    doc = (ROOT / "docs" / "reliability.md").read_text()
    for rule in {r for group in ignores for r in group.split(",")}:
        assert rule in doc, f"inline hadolint ignore {rule} is not justified in docs/reliability.md"


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if UV is None:
        pytest.skip("uv runs checkov in its own environment")
    root = tmp_path_factory.mktemp("scan")
    ours, negative = root / "ours", root / "neg"
    (ours / ".github" / "workflows").mkdir(parents=True)
    (negative / ".github" / "workflows").mkdir(parents=True)
    (negative / "negative").mkdir()
    if DOCKERFILE.exists():
        shutil.copy(DOCKERFILE, ours / "Dockerfile")
    for wf in sorted(WORKFLOWS.glob("*.y*ml")) if WORKFLOWS.is_dir() else []:
        shutil.copy(wf, ours / ".github" / "workflows" / wf.name)
    (negative / "negative" / "Dockerfile").write_text(BAD_DOCKERFILE)
    (negative / ".github" / "workflows" / "negative.yml").write_text(BAD_WORKFLOW)
    result = subprocess.run(
        [UV, "tool", "run", "--from", CHECKOV, "checkov", "-d", str(ours), "-d", str(negative),
         "--framework", "dockerfile", "github_actions", "--output", "json",
         "--skip-download", "--quiet"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if not result.stdout.strip():
        pytest.skip(f"checkov did not run here: {result.stderr[-500:]}")
    # One JSON document per -d root, printed back to back.
    parts: list[dict[str, Any]] = []
    decoder, text, at = json.JSONDecoder(), result.stdout, 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        doc, at = decoder.raw_decode(text, at)
        parts += doc if isinstance(doc, list) else [doc]
    return parts


def failed(report: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (part["check_type"], f["check_id"], f["file_path"])
        for part in report
        for f in part.get("results", {}).get("failed_checks", [])
    ]


def test_checkov_dockerfile_and_workflows(checkov_report: list[dict[str, Any]]) -> None:
    everything = failed(checkov_report)
    negative = [f for f in everything if "negative" in f[2]]
    ours = [f for f in everything if "negative" not in f[2]]
    unjustified = [f for f in ours if f[1] not in JUSTIFIED]
    passed: dict[str, int] = {}
    for part in checkov_report:
        passed[part["check_type"]] = passed.get(part["check_type"], 0) + part["summary"]["passed"]
    record(
        "checkov",
        passed=passed,
        failed_unjustified=len(unjustified),
        justified_skips=sorted({f[1] for f in ours} & set(JUSTIFIED)),
        workflows_scanned=len(list(WORKFLOWS.glob("*.y*ml"))) if WORKFLOWS.is_dir() else 0,
        negative_control=len(negative),
    )
    # The negative controls prove both frameworks ran.
    assert {f[0] for f in negative} == {"dockerfile", "github_actions"}, negative
    assert unjustified == []


def test_base_images_are_pinned_and_skips_documented() -> None:
    if not DOCKERFILE.exists():
        pytest.skip("service/Dockerfile does not exist yet")
    text = DOCKERFILE.read_text()
    for image in re.findall(r"^FROM (\S+)", text, flags=re.M):
        if not image.startswith("${"):
            assert (":" in image and not image.endswith(":latest")) or "@sha256:" in image, image
    # checkov cannot resolve ARG defaults: an ARG used in FROM must default to a pinned tag.
    for arg in re.findall(r"^FROM \$\{(\w+)\}", text, flags=re.M):
        default = re.search(rf"^ARG {arg}=(\S+)", text, flags=re.M)
        assert default, f"ARG {arg} has no default"
        image = default.group(1)
        assert ":" in image or "@sha256:" in image, image
        assert not image.endswith(":latest"), image
    doc = (ROOT / "docs" / "reliability.md").read_text()
    for check_id in JUSTIFIED:
        assert check_id in doc, check_id
