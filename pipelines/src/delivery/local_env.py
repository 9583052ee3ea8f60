"""The local environment: Prometheus, HAProxy, the traffic generator and one service process per
track, all on 127.0.0.1, with their state in one directory (`.state/local` by default).

This module composes the parts, each with its own job: the state file (`local_state`), tenant keys
(`tenants`), privilege dropping (`privilege`), port slots (`ports`), process launchers
(`launchers`) and the socket directory (`rundir`). Processes are recorded the moment they exist,
so a `deliver` that dies leaves a state the next one can converge from. `up()` is idempotent;
reading (`read`, `running`, `track`) never starts or writes anything.
"""

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from image_contracts.tracks import TRACKS

from delivery import (
    alerting_local,
    haproxy,
    launchers,
    ports,
    privilege,
    procs,
    prometheus_local,
    rundir,
    tenants,
    versions,
)
from delivery.config import LocalSettings
from delivery.local_state import EnvState, StateFile, TrackRun
from delivery.procs import Proc
from delivery.target import TargetError
from delivery.versions import Launch


class LocalEnvironment:
    def __init__(self, repo: Path, settings: LocalSettings, env_name: str = "local") -> None:
        self.repo = repo
        self.settings = settings
        self.env_name = env_name
        state_dir = Path(settings.state_dir)
        self.dir = state_dir if state_dir.is_absolute() else repo / state_dir
        self.state = StateFile(self.dir)
        self.logs = self.dir / "logs"
        self.keys_file = self.dir / "tenant-keys.json"
        self.user = privilege.service_user(settings.run_as_user)
        # What the (unprivileged) service process must reach: its code, venv, storage, tenants.
        self.service_dir = privilege.service_dir(self.dir, env_name, self.user)
        self.versions_dir = self.service_dir / "versions"
        self.storage = self.service_dir / "storage"
        self.tenants_file = self.service_dir / "tenants.toml"
        self.socket_dir = rundir.path_for(self.dir)
        self.layout = launchers.ServiceLayout(
            env_name=env_name,
            service_dir=self.service_dir,
            storage=self.storage,
            tenants_file=self.tenants_file,
            home=self.service_dir / "service-home",
            logs=self.logs,
            user=self.user,
        )

    # --- reading: never starts or writes anything ------------------------------------------
    def read(self) -> EnvState:
        return self.state.read()

    def track(self, name: str) -> TrackRun | None:
        return self.read().track(name)

    def proc(self, name: str) -> Proc | None:
        found: Proc | None = getattr(self.read(), name)
        return found

    def running(self) -> bool:
        """Whether any recorded process of this environment is alive."""
        return any(procs.alive(p) for p in self.read().processes())

    @property
    def runtime(self) -> haproxy.Runtime:
        return haproxy.Runtime(rundir.socket_path(self.socket_dir, "haproxy.sock"))

    def gateway_url(self) -> str:
        proc = self.proc("haproxy")
        if proc is None:
            raise TargetError("the local environment is not up (no HAProxy)")
        return f"http://127.0.0.1:{proc.port}"

    def prometheus_url(self) -> str:
        proc = self.proc("prometheus")
        if proc is None:
            raise TargetError("the local environment is not up (no Prometheus)")
        return f"http://127.0.0.1:{proc.port}"

    def traffic_stats(self) -> dict[str, Any]:
        path = self.dir / "traffic.json"
        if not path.exists():
            return {"counts": {}}
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    # --- service processes -----------------------------------------------------------------
    def runtime_python(self) -> str | None:
        return privilege.runtime_python(self.repo, self.user)

    def _tenants(self) -> None:
        tenants.ensure(self.keys_file, self.tenants_file, self.settings.tenants, self.user)

    def start_service(self, track: str, launch: Launch) -> TrackRun:
        """Start one track's process, record it at once, then wait until it is ready."""
        if track not in TRACKS:
            raise TargetError(f"unknown track {track!r}")
        self.service_dir.mkdir(parents=True, exist_ok=True)
        self.service_dir.chmod(0o755)
        self._tenants()
        for path in (self.storage, self.layout.home):
            privilege.hand_over(path, self.user)
        started = launchers.service(track, launch, self._port_for(track), self.layout)
        run = TrackRun(launch.version, launch, started.proc)
        self.state.update(lambda s: s.with_track(track, run))
        procs.wait_http(started.proc, started.ready_url, timeout=started.ready_timeout)
        return run

    def start_pair(self, *runs: tuple[str, Launch]) -> None:
        """Start several tracks at once: each spends seconds importing libvips and the web stack."""
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            for future in [pool.submit(self.start_service, t, launch) for t, launch in runs]:
                future.result()

    def stop_track(self, track: str) -> None:
        run = self.track(track)
        if run is not None:
            procs.stop(run.proc)
        self.state.update(lambda s: s.without_track(track))

    def set_weight(self, weight: int) -> None:
        self.state.update(lambda s: replace(s, weight=weight))

    def slots(self) -> dict[str, int]:
        state = self.state.update(
            lambda s: replace(s, slots=ports.reserve(s.slots, procs.free_port))
        )
        return dict(state.slots)

    def _port_for(self, track: str) -> int:
        slots = self.slots()
        current = self.track("stable")
        in_use = current.proc.port if current is not None and procs.alive(current.proc) else None
        for port in ports.candidates(track, slots, in_use):
            if procs.port_is_free(port):
                return port
        return procs.free_port()  # a slot is taken by someone else: discovery picks it up

    def write_targets(self) -> None:
        running = {name: t.proc.port for name, t in self.read().tracks.items()}
        targets = ports.scrape_targets(running, self.slots())
        prometheus_local.write_targets(self.dir / "targets.json", targets)

    def wait_scraped(self, timeout: float = 30.0) -> None:
        """Block until Prometheus scrapes every recorded track (file discovery lags a little)."""
        want = {f"127.0.0.1:{t.proc.port}" for t in self.read().tracks.values()}
        url = f"{self.prometheus_url()}/api/v1/targets?state=active"
        deadline = time.monotonic() + timeout
        up: set[str] = set()
        seen: object = None
        while time.monotonic() < deadline:
            try:
                targets = httpx.get(url, timeout=2.0).json()["data"]["activeTargets"]
                seen = [(t["labels"]["instance"], t["health"], t["lastError"]) for t in targets]
                up = {t["labels"]["instance"] for t in targets if t["health"] == "up"}
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                seen, up = exc, set()
            if want <= up:
                return
            time.sleep(0.2)
        raise TargetError(
            f"Prometheus does not scrape {sorted(want - up)} after {timeout}s (targets: {seen})"
        )

    # --- the environment's own processes ---------------------------------------------------
    def up(self, initial_stable: Launch | None) -> None:
        """Start whatever is not running. `initial_stable` is used only when no stable exists."""
        for sub in (self.versions_dir, self.logs):
            sub.mkdir(parents=True, exist_ok=True)
        self._tenants()
        stable = self.track("stable")
        restarted = stable is None or not procs.alive(stable.proc)
        if stable is None or restarted:
            launch = stable.launch if stable is not None else initial_stable
            if launch is None:
                raise TargetError("no stable version to start the local environment with")
            stable = self.start_service("stable", launch)
        prom = self.proc("prometheus")
        if prom is None or not procs.alive(prom):
            self.write_targets()
            # The platform's alert rules, evaluated here and routed by the generated config.
            alerting_local.install_rules(self.dir / "rules")
            alertmanager = self._alertmanager()
            started = launchers.prometheus(
                state_dir=self.dir,
                targets_file=self.dir / "targets.json",
                scrape_interval=self.settings.scrape_interval_seconds,
                logs=self.logs,
                alertmanager=f"127.0.0.1:{alertmanager.port}" if alertmanager else "",
            )
            self.state.update(lambda s: replace(s, prometheus=started.proc))
            procs.wait_http(started.proc, started.ready_url, timeout=started.ready_timeout)
        self.write_targets()
        proxy = self.proc("haproxy")
        if proxy is None or not procs.alive(proxy):
            rundir.ensure(self.socket_dir)
            gateway = launchers.gateway(
                config=self.dir / "haproxy.cfg",
                stats_socket=self.runtime.socket_path,
                stable_port=stable.proc.port,
                logs=self.logs,
            )
            self.state.update(lambda s: replace(s, haproxy=gateway.proc, weight=0))
            proxy = gateway.proc
            procs.wait_http(proxy, gateway.ready_url, timeout=gateway.ready_timeout)
        elif restarted:
            self.runtime.point("stable", stable.proc.port)
        prometheus_local.write_gateway_target(self.dir / "gateway.json", proxy.port)
        traffic = self.proc("traffic")
        if traffic is None or not procs.alive(traffic):
            proc = launchers.traffic(
                gateway_url=f"http://127.0.0.1:{proxy.port}",
                keys_file=self.keys_file,
                stats_file=self.dir / "traffic.json",
                settings=self.settings,
                logs=self.logs,
            )
            self.state.update(lambda s: replace(s, traffic=proc))

    def alertmanager_url(self) -> str | None:
        proc = self.proc("alertmanager")
        return f"http://127.0.0.1:{proc.port}" if proc is not None else None

    def _alertmanager(self) -> Proc | None:
        """The local Alertmanager (Debian's prometheus-alertmanager), started once; None when
        it is not installed: Prometheus still evaluates the rules, and `deliver status` says so."""
        current = self.proc("alertmanager")
        if current is not None and procs.alive(current):
            return current
        try:
            alerting_local.alertmanager_command()
        except FileNotFoundError:
            return None
        proc = alerting_local.start_alertmanager(self.dir / "alertmanager")
        self.state.update(lambda s: replace(s, alertmanager=proc))
        return proc

    def down(self) -> None:
        state = self.read()
        for proc in (state.traffic, state.haproxy, state.alertmanager):
            if proc is not None:
                procs.stop(proc)
        for track in reversed(TRACKS):  # canary first: stable serves until the end
            run = state.track(track)
            if run is not None:
                procs.stop(run.proc)
        if state.prometheus is not None:
            procs.stop(state.prometheus)
        self.state.update(lambda s: EnvState())
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        # Built versions go too, including git worktrees registered in the shared repository.
        if self.versions_dir.is_dir():
            for built in sorted(self.versions_dir.iterdir()):
                versions.remove(self.repo, self.versions_dir, built.name)
