"""The local Prometheus: a config with a file-based target list the environment rewrites."""

import json
from collections.abc import Iterable
from pathlib import Path


def render_config(
    *,
    targets_file: Path,
    scrape_interval: float,
    rule_files: Iterable[Path] = (),
    gateway_file: Path | None = None,
) -> str:
    interval = f"{int(scrape_interval * 1000)}ms"
    rules = "".join(f"\n  - {path}" for path in rule_files)
    return f"""# Written by delivery.launchers.
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
rule_files:{rules or " []"}
scrape_configs:
  - job_name: image-service
    honor_labels: true  # track and version come from the service itself
    file_sd_configs:
      - files: [{targets_file}]
        refresh_interval: {interval}
""" + (
        ""
        if gateway_file is None
        else f"""  - job_name: gateway  # HAProxy's own exporter: what users got, per server
    metrics_path: /haproxy-metrics
    file_sd_configs:
      - files: [{gateway_file}]
        refresh_interval: {interval}
"""
    )


def write_gateway_target(gateway_file: Path, port: int) -> None:
    """The gateway's exporter as a scrape target (its port is known once HAProxy runs)."""
    tmp = gateway_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"slot": "gateway"}}]))
    tmp.replace(gateway_file)


LOCAL_CELL = "local"


def write_targets(targets_file: Path, targets: dict[str, int]) -> None:
    """Atomically replace the target list: {track: port}."""
    doc = [
        # The local environment is one cell: every series carries `cell`, as on EKS, so the
        # per-cell and fleet-wide rules and dashboards have data here too.
        {"targets": [f"127.0.0.1:{port}"], "labels": {"slot": track, "cell": LOCAL_CELL}}
        for track, port in sorted(targets.items())
    ]
    tmp = targets_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(targets_file)
