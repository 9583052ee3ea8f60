"""The Dockerfile cannot be built here (no Docker engine): lint it and check its shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "service" / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(
    Path(__file__).resolve().parents[2] / ".venv/bin/hadolint"
)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HADOLINT, str(path)], capture_output=True, text=True, check=False)


def stages(text: str) -> list[list[str]]:
    """Instructions per stage, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    out: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def test_hadolint_passes() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install gcc\nUSER root\n")
    assert hadolint(bad).returncode != 0


def test_multi_stage_slim_non_root_final_stage() -> None:
    all_stages = stages(DOCKERFILE.read_text())
    assert len(all_stages) >= 2
    final = all_stages[-1]
    assert all("slim" in stage[0] for stage in all_stages if "python:" in stage[0])
    assert "slim" in final[0]
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric UID, so runAsNonRoot can verify it"
    assert int(uid) > 0
    final_text = "\n".join(final)
    for tool in ("apt-get", "gcc", "build-essential", "uv sync", "pip install"):
        assert tool not in final_text, f"{tool} in the final stage"
    copies = [ln for ln in final if ln.upper().startswith("COPY")]
    assert copies == ["COPY --from=build /app/.venv /app/.venv"]
    assert 'ENTRYPOINT ["image-service"]' in final
    assert "HEALTHCHECK" in final_text


def test_read_only_root_filesystem_friendly() -> None:
    text = DOCKERFILE.read_text()
    # No bytecode writes at run time (compiled at build), storage on a mounted volume.
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "UV_COMPILE_BYTECODE=1" in text
    assert "IMAGE_SERVICE_STORAGE=/data" in text


CHECKOV = "checkov==3.3.30"  # same pin as tests/infra (ADR 025: its own tool environment)
UV = shutil.which("uv")


@pytest.mark.skipif(UV is None, reason="uv runs checkov in its own environment")
def test_checkov_passes(tmp_path: Path) -> None:
    # One run (checkov starts slowly) over ours and a negative control that must fail.
    bad = tmp_path / "bad" / "Dockerfile"
    bad.parent.mkdir()
    bad.write_text("FROM python:latest\nUSER root\nRUN pip install thing\n")
    result = subprocess.run(
        [
            *(UV or "uv", "tool", "run", "--from", CHECKOV, "checkov"),
            *("-f", str(DOCKERFILE), "-f", str(bad), "--framework", "dockerfile"),
            *("--output", "json", "--quiet", "--skip-download"),  # no network
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = {c["file_abs_path"] for c in report["results"]["failed_checks"]}
    assert failed == {str(bad)}, report["results"]["failed_checks"]
