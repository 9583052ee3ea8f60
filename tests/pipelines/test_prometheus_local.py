"""The local Prometheus: its config and the file-based target list."""

from pathlib import Path

from delivery import prometheus_local


def test_prometheus_config_and_targets(tmp_path: Path) -> None:
    text = prometheus_local.render_config(targets_file=tmp_path / "t.json", scrape_interval=0.5)
    assert "scrape_interval: 500ms" in text
    assert "honor_labels: true" in text
    prometheus_local.write_targets(tmp_path / "t.json", {"canary": 9002, "stable": 9001})
    assert '"127.0.0.1:9002"' in (tmp_path / "t.json").read_text()
