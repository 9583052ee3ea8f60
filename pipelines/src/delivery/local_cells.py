"""The local environment with cells: each cell is its own set of service processes (stable,
baseline, canary) with its own state file, storage and tenants file; one HAProxy routes
`/v1/{tenant}/...` to the backend of the tenant's cell by a map file (the placement table, and
nothing else); one Prometheus, whose every series carries `cell`; one traffic generator for every
tenant. Used when `environments/cells.<env>.yaml` exists for a local target (docs/cells.md);
without it the single-cell `LocalEnvironment` runs as before.

Layout under the state dir (`.state/local`):

    env.json               the shared processes: Prometheus, HAProxy, traffic, Alertmanager
    cells/<cell>/env.json  the cell's tracks, weight and port slots (`LocalEnvironment`'s file)
    targets-<cell>.json    the cell's scrape targets, labelled cell=<cell>
    tenants.map            the placement table the gateway reads
    rollout-launch.json    how to start the version a rollout delivers (a resumed run needs it)

Cells share no mutable state the service writes: each has its own storage directory and a
tenants file with only its own tenants, as each cell's stack does on EKS (ADR 131, 136).
"""

import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from image_contracts.tracks import TRACKS

from delivery import (
    alerting_local,
    haproxy,
    launchers,
    ports,
    procs,
    prometheus_local,
    rundir,
    tenants,
)
from delivery.cells.placement import TenantLoad, check_placement
from delivery.cells.schema import CellCatalog, CellsError, load_cells
from delivery.config import LocalSettings
from delivery.local_env import LocalEnvironment
from delivery.local_state import EnvState
from delivery.local_target import LocalTarget
from delivery.target import TargetError
from delivery.versions import Launch

GATEWAY_CELL = "router"  # the `cell` of the gateway's own series (frontend, unplaced tenants)


def cells_file(environments: Path, env: str) -> Path:
    return environments / f"cells.{env}.yaml"


def load_catalog(environments: Path, env: str) -> CellCatalog | None:
    """The env's cells, or None when it declares none (the single-cell path)."""
    if not cells_file(environments, env).is_file():
        return None
    return load_cells(env, environments)


def placement(catalog: CellCatalog, settings: LocalSettings) -> dict[str, str]:
    """tenant -> cell for the local tenants, validated (known cells, capacity). A local tenant's
    load is its share of the traffic generator's rate: what the cell really carries here."""
    extra = sorted(set(catalog.placement) - set(settings.tenants))
    if extra:
        raise CellsError(
            f"{catalog.source}: placement names tenant(s) {extra} the environment does not have"
        )
    share = settings.traffic_rps / max(1, len(settings.tenants))
    loads = [TenantLoad(t, catalog.placement.get(t), observed_rps=share) for t in settings.tenants]
    return check_placement(loads, catalog).cell_of()


def write_cell_targets(path: Path, cell: str, targets: Mapping[str, int]) -> None:
    """Atomically replace one cell's scrape targets: {slot: port}, each labelled with the cell."""
    doc = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"slot": slot, "cell": cell}}
        for slot, port in sorted(targets.items())
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def label_gateway_series(config_text: str, cells: tuple[str, ...]) -> str:
    """Prometheus config edit: the gateway's series carry `cell` too. A backend's series (its
    `proxy` label is the cell's name) get that cell; the frontend's get `router`."""
    doc: dict[str, Any] = yaml.safe_load(config_text)
    for job in doc.get("scrape_configs", []):
        if job.get("job_name") != "gateway":
            continue
        job["relabel_configs"] = [{"target_label": "cell", "replacement": GATEWAY_CELL}]
        job["metric_relabel_configs"] = [
            {
                "source_labels": ["proxy"],
                "regex": "(" + "|".join(cells) + ")",
                "target_label": "cell",
                "replacement": "$1",
            }
        ]
    return "# Written by delivery.local_cells (cells relabelled).\n" + yaml.safe_dump(
        doc, sort_keys=False
    )


class CellEnvironment(LocalEnvironment):
    """One cell's processes: a `LocalEnvironment` whose gateway backend, Prometheus and built
    versions are the shared ones, and whose tenants are the cell's own."""

    def __init__(
        self,
        repo: Path,
        settings: LocalSettings,
        env_name: str,
        cell: str,
        members: tuple[str, ...],
        shared: LocalEnvironment,
    ) -> None:
        own = replace(settings, state_dir=str(shared.dir / "cells" / cell), tenants=members)
        super().__init__(repo, own, env_name)
        self.cell = cell
        self.shared = shared
        self.versions_dir = shared.versions_dir  # a version is built once, run in every cell

    @property
    def runtime(self) -> haproxy.Runtime:
        return haproxy.Runtime(
            self.shared.runtime.socket_path, backend=haproxy.cell_backend(self.cell)
        )

    def gateway_url(self) -> str:
        return self.shared.gateway_url()

    def prometheus_url(self) -> str:
        return self.shared.prometheus_url()

    def alertmanager_url(self) -> str | None:
        return self.shared.alertmanager_url()

    def traffic_stats(self) -> dict[str, Any]:
        return self.shared.traffic_stats()

    def _tenants(self) -> None:
        """The cell's keys are the shared keys of its own tenants; its tenants file follows."""
        everyone, _ = tenants.keys(self.shared.keys_file, self.shared.settings.tenants)
        # The secret too: the traffic generator signs with the shared keys file's secrets.
        mine = [
            {"id": k.id, "key": k.key, "secret": k.secret}
            for k in everyone
            if k.id in self.settings.tenants
        ]
        text = json.dumps(mine)
        current = self.keys_file.read_text() if self.keys_file.exists() else ""
        if current != text:
            self.keys_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            self.tenants_file.unlink(missing_ok=True)  # rewritten from the new keys below
        tenants.ensure(self.keys_file, self.tenants_file, self.settings.tenants, self.user)

    def targets_file(self) -> Path:
        return self.shared.dir / f"targets-{self.cell}.json"

    def write_targets(self) -> None:
        running = {name: t.proc.port for name, t in self.read().tracks.items()}
        write_cell_targets(
            self.targets_file(), self.cell, ports.scrape_targets(running, self.slots())
        )

    def stop_all(self) -> None:
        state = self.read()
        for track in reversed(TRACKS):  # canary first: stable serves until the end
            run = state.track(track)
            if run is not None:
                procs.stop(run.proc)
        self.state.update(lambda s: EnvState())
        self.targets_file().unlink(missing_ok=True)


@dataclass(frozen=True)
class CellView:
    cell: str
    stable: str
    canary: str
    weight: int
    tenants: tuple[str, ...]


class CellsLocal:
    """The local environment with cells: build once, `up()` idempotently, `down()` everything."""

    def __init__(
        self, repo: Path, settings: LocalSettings, env_name: str, catalog: CellCatalog
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.env_name = env_name
        self.catalog = catalog
        self.cell_of = placement(catalog, settings)
        self.shared = LocalEnvironment(repo, settings, env_name)
        self.cells: dict[str, CellEnvironment] = {}
        self.targets: dict[str, LocalTarget] = {}
        for cell in catalog.names:
            members = tuple(t for t in settings.tenants if self.cell_of.get(t) == cell)
            env = CellEnvironment(repo, settings, env_name, cell, members, self.shared)
            self.cells[cell] = env
            self.targets[cell] = LocalTarget(repo, env.settings, env_name, env=env)

    # --- reading: never starts or writes anything ------------------------------------------
    def legacy(self) -> bool:
        """The state dir holds the single-cell environment (tracks of its own, no cells)."""
        return bool(self.shared.read().tracks)

    def running(self) -> bool:
        return self.shared.running() or any(e.running() for e in self.cells.values())

    def views(self) -> tuple[CellView, ...]:
        out = []
        for cell, env in self.cells.items():
            state = env.read()
            stable, canary = state.track("stable"), state.track("canary")
            out.append(
                CellView(
                    cell,
                    stable.version if stable is not None else "",
                    canary.version if canary is not None else "",
                    state.weight,
                    env.settings.tenants,
                )
            )
        return tuple(out)

    # --- the version a rollout delivers ----------------------------------------------------
    @property
    def launch_file(self) -> Path:
        return self.shared.dir / "rollout-launch.json"

    def save_launch(self, launch: Launch) -> None:
        doc = {"version": launch.version, "argv": list(launch.argv), "env": dict(launch.env)}
        self.shared.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.launch_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.launch_file)

    def saved_launch(self, version: str) -> Launch | None:
        try:
            doc = json.loads(self.launch_file.read_text())
        except (OSError, ValueError):
            return None
        if doc.get("version") != version:
            return None
        return Launch(version, tuple(doc["argv"]), dict(doc["env"]))

    # --- bringing it up --------------------------------------------------------------------
    def up(self) -> None:
        """Start whatever is not running: each cell's stable, Prometheus, the gateway, traffic."""
        if self.legacy():
            raise TargetError(
                f"{self.shared.dir} runs the single-cell environment; stop it first with "
                f"`deliver env down --env {self.env_name}` (cells are configured now)"
            )
        shared = self.shared
        for sub in (shared.versions_dir, shared.logs):
            sub.mkdir(parents=True, exist_ok=True)
        shared.service_dir.mkdir(parents=True, exist_ok=True)
        shared.service_dir.chmod(0o755)  # the cells' service user reaches the built versions
        shared._tenants()  # the shared keys first: each cell derives its own
        restarted = self._stables()
        self._prometheus()
        proxy = shared.proc("haproxy")
        if proxy is None or not procs.alive(proxy):
            proxy = self._gateway()
        else:
            for cell in restarted:
                run = self.cells[cell].track("stable")
                assert run is not None
                self.cells[cell].runtime.point("stable", run.proc.port)
        prometheus_local.write_gateway_target(shared.dir / "gateway.json", proxy.port)
        traffic = shared.proc("traffic")
        if traffic is None or not procs.alive(traffic):
            started = launchers.traffic(
                gateway_url=f"http://127.0.0.1:{proxy.port}",
                keys_file=shared.keys_file,
                stats_file=shared.dir / "traffic.json",
                settings=self.settings,
                logs=shared.logs,
            )
            shared.state.update(lambda s: replace(s, traffic=started))

    def _stables(self) -> list[str]:
        """Each cell's stable, started (in parallel) where it does not run; the cells started."""
        need = []
        for cell, env in self.cells.items():
            run = env.track("stable")
            if run is None or not procs.alive(run.proc):
                need.append(cell)
        if not need:
            return []
        initial: Launch | None = None
        launches: dict[str, Launch] = {}
        for cell in need:
            run = self.cells[cell].track("stable")
            if run is None:
                initial = initial or self.targets[cell].initial_stable()
                launches[cell] = initial
            else:
                launches[cell] = run.launch
        with ThreadPoolExecutor(max_workers=len(need)) as pool:
            futures = [
                pool.submit(self.cells[c].start_service, "stable", launches[c]) for c in need
            ]
            for future in futures:
                future.result()
        return need

    def _prometheus(self) -> None:
        shared = self.shared
        for env in self.cells.values():
            env.write_targets()
        prom = shared.proc("prometheus")
        if prom is not None and procs.alive(prom):
            return
        alerting_local.install_rules(shared.dir / "rules")
        alertmanager = shared._alertmanager()
        cells = self.catalog.names
        started = launchers.prometheus(
            state_dir=shared.dir,
            targets_file=shared.dir / "targets-*.json",  # every cell's file (a glob)
            scrape_interval=self.settings.scrape_interval_seconds,
            logs=shared.logs,
            alertmanager=f"127.0.0.1:{alertmanager.port}" if alertmanager else "",
            edit=lambda text: label_gateway_series(text, cells),
        )
        shared.state.update(lambda s: replace(s, prometheus=started.proc))
        procs.wait_http(started.proc, started.ready_url, timeout=started.ready_timeout)

    def _gateway(self) -> procs.Proc:
        shared = self.shared
        rundir.ensure(shared.socket_dir)
        stable_ports = {}
        for cell, env in self.cells.items():
            run = env.track("stable")
            assert run is not None
            stable_ports[cell] = run.proc.port
        gateway = launchers.gateway_cells(
            config=shared.dir / "haproxy.cfg",
            stats_socket=shared.runtime.socket_path,
            stable_ports=stable_ports,
            map_file=shared.dir / "tenants.map",
            cell_of=self.cell_of,
            logs=shared.logs,
        )
        shared.state.update(lambda s: replace(s, haproxy=gateway.proc, weight=0))
        for env in self.cells.values():  # a new gateway starts with every canary at 0
            env.set_weight(0)
        procs.wait_http(gateway.proc, gateway.ready_url, timeout=gateway.ready_timeout)
        return gateway.proc

    def down(self) -> None:
        state = self.shared.read()
        for proc in (state.traffic, state.haproxy):
            if proc is not None:
                procs.stop(proc)
        for env in self.cells.values():
            env.stop_all()
        self.shared.down()  # Prometheus, Alertmanager, the socket dir and built versions
        self.launch_file.unlink(missing_ok=True)
