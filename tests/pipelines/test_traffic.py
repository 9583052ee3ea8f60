"""The synthetic traffic generator's own logic: its seed image, loopback only, bounded options."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pyvips
from delivery import traffic


def test_the_seed_image_is_a_png_libvips_decodes() -> None:
    image = pyvips.Image.new_from_buffer(traffic.tiny_png(96, 64), "")
    assert (image.width, image.height, image.bands) == (96, 64, 3)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:80", "http://example.com", "http://0.0.0.0:8000", "file:///etc"]
)
def test_only_a_loopback_gateway_is_accepted(url: str) -> None:
    with pytest.raises(SystemExit, match="refusing non-loopback"):
        traffic.check_loopback(url)
    traffic.check_loopback("http://127.0.0.1:8000")


def test_stats_are_rewritten_whole(tmp_path: Path) -> None:
    stats = traffic.Stats(tmp_path / "traffic.json")
    for code in ("200", "200", "503"):
        stats.add("acme", code)
    stats.flush()
    doc = json.loads((tmp_path / "traffic.json").read_text())
    assert doc["counts"] == {"acme": {"200": 2, "503": 1}}
    assert not (tmp_path / "traffic.tmp").exists()


@pytest.mark.parametrize("extra", [["--rps", "501"], ["--rps", "0"], ["--max-seconds", "90000"]])
def test_unbounded_load_is_refused(tmp_path: Path, extra: list[str]) -> None:
    argv = ["--gateway", "http://127.0.0.1:9", "--tenants", "t.json", "--stats", "s.json", *extra]
    done = subprocess.run(
        [sys.executable, "-m", "delivery.traffic", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "must be in" in done.stderr
