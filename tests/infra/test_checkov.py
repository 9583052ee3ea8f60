"""checkov (kubernetes framework) over the manifests the program renders, for every environment:
no failed check, except skips justified in docs/security.md.

checkov pins dependencies that would downgrade pulumi, so it runs from its own cached tool
environment (`uv tool run --from checkov==VERSION`), never from the project's venv.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_harness import ENVIRONMENTS, Recorded, manifest

CHECKOV = "checkov==3.3.30"
# check id -> why; each must also appear in docs/security.md's checkov table.
SKIPS = {
    "CKV_K8S_43": "pinned by commit-SHA tag in an immutable-tag ECR repository",
}
UV = shutil.which("uv")

pytestmark = pytest.mark.skipif(UV is None, reason="uv runs checkov in its own environment")


def render(resources: list[Recorded], into: Path) -> int:
    into.mkdir(parents=True)
    objects = [manifest(r) for r in resources if r.is_kubernetes_object]
    for index, obj in enumerate(objects):
        name = f"{index:03d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        (into / name).write_text(yaml.safe_dump(obj, sort_keys=False))
    return len(objects)


def _bad_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "negative"},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {"name": "c", "image": "nginx:latest", "securityContext": {"privileged": True}}
            ],
        },
    }


@pytest.fixture(scope="module")
def checkov_report(
    recorded: dict[str, list[Recorded]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("manifests")
    for env in ENVIRONMENTS:
        assert render(recorded[env], root / env) > 20
    # Negative control in the same run: a manifest checkov must fail.
    (root / "negative").mkdir()
    (root / "negative" / "bad-pod.yaml").write_text(yaml.safe_dump(_bad_pod()))
    result = subprocess.run(
        [UV or "uv", "tool", "run", "--from", CHECKOV, "checkov",
         "-d", str(root), "--framework", "kubernetes", "--output", "json",
         "--skip-check", ",".join(SKIPS), "--skip-download", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    found: dict[str, Any] = report[0] if isinstance(report, list) else report
    return found


def _failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report.get("results", {}).get("failed_checks", []))


def test_rendered_manifests_pass_checkov(checkov_report: dict[str, Any]) -> None:
    ours = [f for f in _failed(checkov_report) if "/negative/" not in f["file_path"]]
    assert [(f["check_id"], f["file_path"]) for f in ours] == []
    assert checkov_report["summary"]["passed"] > 200


def test_checkov_fails_a_bad_manifest(checkov_report: dict[str, Any]) -> None:
    bad = {f["check_id"] for f in _failed(checkov_report) if "/negative/" in f["file_path"]}
    assert {"CKV_K8S_16", "CKV_K8S_19"} <= bad  # privileged, host network


def test_every_skip_is_justified_in_security_doc(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "security.md").read_text()
    for check_id in SKIPS:
        assert f"| {check_id} " in doc, check_id
