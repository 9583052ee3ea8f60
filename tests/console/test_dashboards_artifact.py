"""The console's dashboards JSON is exactly what the platform's dashboards-as-code render.

The delivery package never imports the platform (Pulumi) at runtime; it reads a committed
artifact. This test is what keeps that artifact honest: change a panel in
platform/src/infra/observability/dashboards.py and it fails until
`uv run python scripts/export_dashboards.py` is run.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def exporter() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "export_dashboards", REPO / "scripts/export_dashboards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_equal_what_the_platform_renders() -> None:
    module = exporter()
    committed = module.ARTIFACT.read_text(encoding="utf-8")
    assert committed == module.rendered(), (
        "pipelines/src/delivery/console/dashboards.json is stale: "
        "run `uv run python scripts/export_dashboards.py`"
    )


def test_the_check_mode_fails_on_a_stale_artifact_and_passes_once_written(tmp_path: Path) -> None:
    script = [sys.executable, str(REPO / "scripts/export_dashboards.py")]
    stale = tmp_path / "dashboards.json"
    stale.write_text("[]\n")
    check = [*script, "--check", "--artifact", str(stale)]
    result = subprocess.run(check, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "is stale" in result.stderr
    subprocess.run([*script, "--artifact", str(stale)], check=True, capture_output=True)
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0


def test_the_delivery_package_does_not_import_the_platform() -> None:
    code = (
        "import sys, delivery.console.app, delivery.console.data, delivery.console.command;"
        "bad = sorted(m for m in sys.modules"
        " if m == 'infra' or m.startswith(('infra.', 'pulumi')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
