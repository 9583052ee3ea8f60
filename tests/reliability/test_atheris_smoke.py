"""atheris (coverage-guided) over the upload validation: a short deterministic smoke run in CI.

The long run is `bench/reliability/run.sh atheris` (probe and probe+render, minutes each).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "bench" / "reliability" / "atheris_probe.py"


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_probe_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(HARNESS), "3000", "60"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"runs": 3000' in done.stdout, done.stdout
