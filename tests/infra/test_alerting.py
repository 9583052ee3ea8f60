"""The Alertmanager configuration the program ships, checked by Alertmanager's own amtool:
it parses, and page and ticket alerts reach receivers that notify someone."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_harness import ENVIRONMENTS, Evaluation

AMTOOL = shutil.which("amtool")
pytestmark = pytest.mark.skipif(AMTOOL is None, reason="apt-get install prometheus-alertmanager")


def _values(estate: dict[str, Evaluation], env: str) -> dict[str, Any]:
    (release,) = [
        r
        for r in estate[f"{env}-platform"].resources
        if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["name"] == "kube-prometheus-stack"
    ]
    return dict(release.inputs["values"])


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, check=False)


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _receiver(path: Path, *labels: str) -> str:
    done = _amtool("config", "routes", "test", f"--config.file={path}", *labels)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_alerts_reach_real_receivers(
    estate: dict[str, Evaluation], env: str, tmp_path: Path
) -> None:
    config = _values(estate, env)["alertmanager"]["config"]
    path = _write(tmp_path, config)
    checked = _amtool("check-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    notifying = {
        r["name"] for r in config["receivers"] if any(k.endswith("_configs") and r[k] for k in r)
    }
    # Our rules' severities and kube-prometheus-stack's.
    for labels in (
        ("severity=page", "alertname=ImageServiceErrorBudgetBurnPage"),
        ("severity=ticket", "alertname=ImageServiceErrorBudgetBurnTicket"),
        ("severity=critical", "alertname=KubePodCrashLooping"),
        ("severity=warning", "alertname=KubeMemoryOvercommit"),
        ("alertname=SomethingNew",),
    ):
        assert _receiver(path, *labels) in notifying, labels
    assert _receiver(path, "alertname=Watchdog", "severity=none") == "null"


def test_the_chart_default_would_be_caught(tmp_path: Path) -> None:
    # kube-prometheus-stack's default routes everything to `null`: the same check fails it.
    default = {
        "route": {
            "receiver": "null",
            "routes": [{"receiver": "null", "matchers": ["alertname=Watchdog"]}],
        },
        "receivers": [{"name": "null"}],
    }
    path = _write(tmp_path, default)
    assert _amtool("check-config", str(path)).returncode == 0
    assert _receiver(path, "severity=page") == "null"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_control_plane_targets_eks_hides_are_not_scraped(
    estate: dict[str, Evaluation], env: str
) -> None:
    # EKS manages controller-manager, scheduler and etcd outside the cluster (no endpoints to
    # scrape), and binds kube-proxy's metrics to localhost: their jobs and rules would alert
    # forever (TargetDown, KubeSchedulerDown, ...).
    values = _values(estate, env)
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[component]["enabled"] is False, component
    rules = values["defaultRules"]["rules"]
    for group in ("etcd", "kubeControllerManager", "kubeSchedulerAlerting", "kubeProxy"):
        assert rules[group] is False, group
