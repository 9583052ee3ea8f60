"""HAProxy as the local gateway: its config (valid for HAProxy itself) and runtime API refusals."""

import re
import subprocess
from pathlib import Path

import pytest
from delivery import haproxy

CHECK_EVERY_SERVER = re.compile(r"server (\w+) \S+ weight \d+ check inter")


def test_haproxy_config_has_three_slots_and_an_admin_socket(tmp_path: Path) -> None:
    cfg = haproxy.render_config(port=8000, stats_socket=tmp_path / "s.sock", stable_port=9001)
    assert f"stats socket {tmp_path / 's.sock'} mode 600 level admin" in cfg
    assert "bind 127.0.0.1:8000" in cfg
    assert f"server stable 127.0.0.1:9001 weight 100 {haproxy.CHECK}\n" in cfg
    assert f"server canary 127.0.0.1:9 weight 0 {haproxy.CHECK} disabled" in cfg
    assert f"server baseline 127.0.0.1:9 weight 0 {haproxy.CHECK} disabled" in cfg


def test_haproxy_health_checks_readyz_and_retries_a_failed_connection_elsewhere() -> None:
    cfg = haproxy.render_config(port=8000, stats_socket=Path("/tmp/s.sock"), stable_port=9001)
    assert "option httpchk GET /readyz" in cfg
    assert "retry-on conn-failure empty-response" in cfg
    assert "option redispatch" in cfg
    assert "retries 0" not in cfg
    assert CHECK_EVERY_SERVER.findall(cfg) == ["stable", "baseline", "canary"]


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
