"""Pure pieces of the local environment: HAProxy config and runtime replies, the socket table
parser behind the "listens only where expected" check, version labels, progress lines."""

import subprocess
from pathlib import Path

import pytest
from delivery import haproxy, postdeploy, prometheus_local, versions
from delivery.config import LocalVersion
from delivery.progress import progress_line
from delivery.target import TargetError


def test_haproxy_config_has_three_slots_and_an_admin_socket(tmp_path: Path) -> None:
    cfg = haproxy.render_config(port=8000, stats_socket=tmp_path / "s.sock", stable_port=9001)
    assert f"stats socket {tmp_path / 's.sock'} mode 600 level admin" in cfg
    assert "bind 127.0.0.1:8000" in cfg
    assert "server stable 127.0.0.1:9001 weight 100\n" in cfg
    assert "server canary 127.0.0.1:9 weight 0 disabled" in cfg
    assert "server baseline 127.0.0.1:9 weight 0 disabled" in cfg


def test_haproxy_cfg_is_valid_for_haproxy_itself(tmp_path: Path) -> None:
    binary = next((p for p in ("/usr/sbin/haproxy", "/usr/bin/haproxy") if Path(p).exists()), None)
    if binary is None:
        pytest.skip("haproxy is not installed")
    cfg = tmp_path / "h.cfg"
    cfg.write_text(haproxy.render_config(port=8000, stats_socket=tmp_path / "s", stable_port=9001))
    check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_runtime_refusals_are_errors(tmp_path: Path) -> None:
    runtime = haproxy.Runtime(tmp_path / "missing.sock")
    with pytest.raises(haproxy.HAProxyError, match="runtime API"):
        runtime.command("show info")
    with pytest.raises(haproxy.HAProxyError, match="one command"):
        runtime.command("show info\nshutdown")
    with pytest.raises(haproxy.HAProxyError, match=r"0\.\.256"):
        runtime.set_weight("canary", 300)


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt uid tmo inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534 0 111 1
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534 0 222 1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000 65534 0 333 1
"""


def test_listening_sockets_are_matched_by_inode() -> None:
    assert postdeploy.listening([TCP], {"111"}) == {"127.0.0.1:8080"}
    # A socket on all interfaces belonging to the process is reported, so the check fails.
    assert postdeploy.listening([TCP], {"111", "222"}) == {"127.0.0.1:8080", "0.0.0.0:8081"}
    assert postdeploy.listening([TCP], {"333"}) == set()  # established, not listening


def test_prometheus_config_and_targets(tmp_path: Path) -> None:
    text = prometheus_local.render_config(targets_file=tmp_path / "t.json", scrape_interval=0.5)
    assert "scrape_interval: 500ms" in text
    assert "honor_labels: true" in text
    prometheus_local.write_targets(tmp_path / "t.json", {"canary": 9002, "stable": 9001})
    assert '"127.0.0.1:9002"' in (tmp_path / "t.json").read_text()


def test_version_labels(repo_root: Path) -> None:
    info, source = versions.resolve(repo_root, "worktree", {}, clock="2026-11-23T15:04:05+00:00")
    assert info.version.endswith("-wt20261123T150405")
    assert len(info.commit) == 40
    assert source.source == "worktree"
    named, spec = versions.resolve(repo_root, "bad", {"bad": LocalVersion("worktree", {"A": "1"})})
    assert named.version == "bad"
    assert spec.env == {"A": "1"}
    with pytest.raises(TargetError, match="expected worktree"):
        versions.resolve(repo_root, "no such; thing", {})
    with pytest.raises(TargetError, match="git rev-parse"):
        versions.resolve(repo_root, "0000000deadbeef", {})


def test_progress_line_shows_step_weight_time_left_and_running_verdict() -> None:
    line = progress_line(
        step=1,
        steps=3,
        weight=25,
        left=12.4,
        extension=1,
        running="pass (score 100)",
        canary_n=120,
        baseline_n=118,
    )
    assert line.startswith("[step 2/3] weight 25% (extension 1) | bake   12s left")
    assert "running verdict: pass (score 100)" in line
