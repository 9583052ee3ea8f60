"""How each process of the local environment is started: its config, its argv, its log.

Each launcher writes what its process needs, spawns it detached and returns at once, so the caller
can record it before waiting for readiness (a `deliver` killed in between still finds it).
"""

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from delivery import alerting_local, haproxy, procs, prometheus_local
from delivery.config import LocalSettings
from delivery.procs import Proc
from delivery.versions import Launch


@dataclass(frozen=True)
class Started:
    proc: Proc
    ready_url: str  # answers 200 once the process serves
    ready_timeout: float


@dataclass(frozen=True)
class ServiceLayout:
    """Where every service process of one environment finds its files, and whom it runs as."""

    env_name: str
    service_dir: Path  # its working directory, reachable by `user`
    storage: Path
    tenants_file: Path
    home: Path
    logs: Path
    user: str | None  # None: run as ourselves


def service(track: str, launch: Launch, port: int, layout: ServiceLayout) -> Started:
    env: Mapping[str, str] = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(layout.home),
        "IMAGE_SERVICE_HOST": "127.0.0.1",
        "IMAGE_SERVICE_PORT": str(port),
        "IMAGE_SERVICE_TRACK": track,
        "IMAGE_SERVICE_VERSION": launch.version,
        "IMAGE_SERVICE_STORAGE": str(layout.storage),
        "IMAGE_SERVICE_TENANTS_FILE": str(layout.tenants_file),
        "IMAGE_SERVICE_ENVIRONMENT": layout.env_name,
        **launch.env,
    }
    proc = procs.spawn(
        f"service-{track}",
        launch.argv,
        port=port,
        log=layout.logs / f"service-{track}-{launch.version}.log",
        env=env,
        cwd=layout.service_dir,
        user=layout.user,
    )
    return Started(proc, f"http://127.0.0.1:{port}/readyz", 60)


def prometheus(
    *,
    state_dir: Path,
    targets_file: Path,
    scrape_interval: float,
    logs: Path,
    alertmanager: str = "",
    edit: Callable[[str], str] | None = None,
) -> Started:
    port = procs.free_port()
    data = state_dir / "prometheus-data"
    data.mkdir(parents=True, exist_ok=True)
    rules_dir = state_dir / "rules"
    rules = sorted(rules_dir.glob("*.yml")) if rules_dir.is_dir() else []
    config = state_dir / "prometheus.yml"
    text = prometheus_local.render_config(
        targets_file=targets_file,
        scrape_interval=scrape_interval,
        rule_files=rules,
        gateway_file=state_dir / "gateway.json",
    )
    if edit is not None:  # e.g. the cells' relabelling (delivery.local_cells)
        text = edit(text)
    if alertmanager:  # host:port of the local Alertmanager
        text = alerting_local.with_alerting(text, alertmanager)
    config.write_text(text)
    proc = procs.spawn(
        "prometheus",
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",
        ],
        port=port,
        log=logs / "prometheus.log",
    )
    return Started(proc, f"http://127.0.0.1:{port}/-/ready", 30)


def gateway(*, config: Path, stats_socket: Path, stable_port: int, logs: Path) -> Started:
    port = procs.free_port()
    config.write_text(
        haproxy.render_config(port=port, stats_socket=stats_socket, stable_port=stable_port)
    )
    return _haproxy(config, port, logs)


def gateway_cells(
    *,
    config: Path,
    stats_socket: Path,
    stable_ports: Mapping[str, int],
    map_file: Path,
    cell_of: Mapping[str, str],
    logs: Path,
) -> Started:
    """The gateway of an environment with cells: one backend per cell, the placement map."""
    port = procs.free_port()
    map_file.write_text(haproxy.render_tenant_map(cell_of))
    config.write_text(
        haproxy.render_cells_config(
            port=port, stats_socket=stats_socket, stable_ports=stable_ports, map_file=map_file
        )
    )
    return _haproxy(config, port, logs)


def _haproxy(config: Path, port: int, logs: Path) -> Started:
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    proc = procs.spawn(
        "haproxy",
        [binary or "haproxy", "-f", str(config), "-db"],
        port=port,
        log=logs / "haproxy.log",
    )
    return Started(proc, f"http://127.0.0.1:{port}{haproxy.METRICS_PATH}", 15)


def traffic(
    *, gateway_url: str, keys_file: Path, stats_file: Path, settings: LocalSettings, logs: Path
) -> Proc:
    argv: Sequence[str] = [
        sys.executable,
        "-m",
        "delivery.traffic",
        "--gateway",
        gateway_url,
        "--tenants",
        str(keys_file),
        "--stats",
        str(stats_file),
        "--rps",
        str(settings.traffic_rps),
        "--max-seconds",
        str(settings.traffic_max_seconds),
    ]
    return procs.spawn("traffic", argv, port=0, log=logs / "traffic.log")
