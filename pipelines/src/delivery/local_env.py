"""The local environment: Prometheus, HAProxy, the traffic generator and one service process per
track, all on 127.0.0.1 free ports, with their state in one directory (`.state/local`).

Processes are started detached and recorded in `env.json` as soon as they exist, so a `deliver`
that dies leaves a state the next one can read and converge from. `up()` is idempotent: it starts
only what is not running.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from image_contracts.tracks import TRACKS

from delivery import haproxy, procs, prometheus_local, versions
from delivery.config import LocalSettings
from delivery.procs import Proc
from delivery.target import TargetError
from delivery.versions import Launch

SLOTS = ("stable-a", "stable-b", "baseline", "canary")
SYSTEM_PYTHONS = ("/usr/bin/python3.11", "/usr/bin/python3", "/usr/local/bin/python3")


@dataclass(frozen=True)
class TrackRun:
    version: str
    launch: Launch
    proc: Proc

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "argv": list(self.launch.argv),
            "env": dict(self.launch.env),
            "proc": self.proc.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrackRun":
        launch = Launch(data["version"], tuple(data["argv"]), dict(data["env"]))
        return cls(data["version"], launch, Proc.from_json(data["proc"]))


def _traversable_by_others(path: Path) -> bool:
    """True when every existing ancestor of `path` lets any user pass through (o+x)."""
    for part in [path, *path.parents]:
        if part.exists() and not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


class LocalEnvironment:
    def __init__(self, repo: Path, settings: LocalSettings, env_name: str = "local") -> None:
        self.repo = repo
        self.settings = settings
        self.env_name = env_name
        state_dir = Path(settings.state_dir)
        self.dir = state_dir if state_dir.is_absolute() else repo / state_dir
        self.state_file = self.dir / "env.json"
        self.logs = self.dir / "logs"
        # What the (unprivileged) service process must reach: its code, venv, storage, tenants.
        self.service_dir = self._service_dir()
        self.versions_dir = self.service_dir / "versions"
        self.storage = self.service_dir / "storage"

    def _service_dir(self) -> Path:
        """The state dir itself, unless the service user could not traverse its ancestors.

        A checkout inside a private directory (CI clones into `mktemp -d`, mode 0700) is out of
        reach for `nobody`; the service's files then live in a world-traversable directory under
        the system temp dir, named after the state dir so that each environment keeps its own.
        """
        if self._service_user() is None or _traversable_by_others(self.dir):
            return self.dir
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"image-delivery-{self.env_name}-{digest}"

    # --- state -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write of env.json under a lock; written atomically on exit."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "env.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            state = self.read()
            yield state
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
            tmp.replace(self.state_file)

    def read(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {"tracks": {}, "weight": 0}
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def track(self, name: str) -> TrackRun | None:
        raw = self.read()["tracks"].get(name)
        return TrackRun.from_json(raw) if raw else None

    def proc(self, name: str) -> Proc | None:
        raw = self.read().get(name)
        return Proc.from_json(raw) if raw else None

    @property
    def runtime(self) -> haproxy.Runtime:
        return haproxy.Runtime(self.dir / "haproxy.sock")

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

    # --- tenants ---------------------------------------------------------------------------
    def tenants(self) -> list[dict[str, str]]:
        """Tenant ids with API keys; the service only ever sees the keys' hashes."""
        keys_file = self.dir / "tenant-keys.json"
        if keys_file.exists():
            known: list[dict[str, str]] = json.loads(keys_file.read_text())
            if [t["id"] for t in known] == list(self.settings.tenants):
                return known
        keys = [{"id": t, "key": secrets.token_urlsafe(24)} for t in self.settings.tenants]
        fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(keys, handle)
        lines = []
        for t in keys:
            digest = hashlib.sha256(t["key"].encode()).hexdigest()
            lines += [
                f"[tenants.{t['id']}]",
                f'api_key_sha256 = ["{digest}"]',
                "allow_unsigned_reads = true",
                "requests_per_second = 1000",
                "",
            ]
        self.service_dir.mkdir(parents=True, exist_ok=True)
        # Key hashes only, yet still the service's secret material: 0600, owned by its user.
        tenants_file = self.service_dir / "tenants.toml"
        fd = os.open(tenants_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines))
        tenants_file.chmod(0o600)
        user = self._service_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(tenants_file, entry.pw_uid, entry.pw_gid)
        return keys

    # --- processes -------------------------------------------------------------------------
    def _service_user(self) -> str | None:
        """Run the service unprivileged when we are root, as production does."""
        if os.geteuid() != 0 or not self.settings.run_as_user:
            return None
        try:
            pwd.getpwnam(self.settings.run_as_user)
        except KeyError:
            return None
        return self.settings.run_as_user

    def runtime_python(self) -> str | None:
        """An interpreter the service user can run, when the repo venv's is out of its reach."""
        user = self._service_user()
        if user is None:
            return None
        candidates = [str(self.repo / ".venv" / "bin" / "python"), *SYSTEM_PYTHONS]
        for index, python in enumerate(candidates):
            try:
                ok = subprocess.run([python, "-c", ""], user=user, capture_output=True).returncode
            except OSError:
                continue
            if ok == 0:
                return None if index == 0 else python
        return None

    def _prepare_service_dirs(self, user: str | None) -> Path:
        home = self.service_dir / "service-home"
        self.service_dir.mkdir(parents=True, exist_ok=True)
        self.service_dir.chmod(0o755)
        for path in (self.storage, home):
            path.mkdir(parents=True, exist_ok=True)
            if user is None:
                continue
            entry = pwd.getpwnam(user)
            # Hand the tree over once; later the service creates everything as its own user.
            if path.stat().st_uid == entry.pw_uid:
                continue
            for root, dirs, files in os.walk(path):
                for name in [root, *dirs, *files]:
                    # A running service renames its temporary files away under our feet.
                    with contextlib.suppress(FileNotFoundError):
                        os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid)
        return home

    def start_service(self, track: str, launch: Launch) -> TrackRun:
        """Start one track's process, record it at once, then wait until it is ready."""
        if track not in TRACKS:
            raise TargetError(f"unknown track {track!r}")
        self.tenants()
        user = self._service_user()
        home = self._prepare_service_dirs(user)
        port = self._port_for(track)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "IMAGE_SERVICE_HOST": "127.0.0.1",
            "IMAGE_SERVICE_PORT": str(port),
            "IMAGE_SERVICE_TRACK": track,
            "IMAGE_SERVICE_VERSION": launch.version,
            "IMAGE_SERVICE_STORAGE": str(self.storage),
            "IMAGE_SERVICE_TENANTS_FILE": str(self.service_dir / "tenants.toml"),
            "IMAGE_SERVICE_ENVIRONMENT": self.env_name,
            **launch.env,
        }
        proc = procs.spawn(
            f"service-{track}",
            launch.argv,
            port=port,
            log=self.logs / f"service-{track}-{launch.version}.log",
            env=env,
            cwd=self.service_dir,
            user=user,
        )
        run = TrackRun(launch.version, launch, proc)
        with self.locked() as state:
            state["tracks"][track] = run.to_json()
        procs.wait_http(proc, f"http://127.0.0.1:{port}/readyz", timeout=60)
        return run

    def stop_track(self, track: str) -> None:
        run = self.track(track)
        if run is not None:
            procs.stop(run.proc)
        with self.locked() as state:
            state["tracks"].pop(track, None)

    def slots(self) -> dict[str, int]:
        """Ports reserved per slot at first start, so Prometheus scrapes them statically and a
        new canary is scraped within one interval (file discovery alone lags ~5 s)."""
        with self.locked() as state:
            if not state.get("slots"):
                state["slots"] = {s: procs.free_port() for s in SLOTS}
            slots: dict[str, int] = state["slots"]
        return slots

    def _port_for(self, track: str) -> int:
        slots = self.slots()
        if track == "stable":
            current = self.track("stable")
            used = current.proc.port if current is not None and procs.alive(current.proc) else None
            candidates = [slots["stable-a"], slots["stable-b"]]
            candidates = [p for p in candidates if p != used] + [p for p in candidates if p == used]
        else:
            candidates = [slots[track]]
        for port in candidates:
            if procs.port_is_free(port):
                return port
        return procs.free_port()  # a slot is taken by someone else: discovery picks it up

    def write_targets(self) -> None:
        tracks = self.read()["tracks"]
        ports = {name: int(t["proc"]["port"]) for name, t in tracks.items()}
        used = set(ports.values())
        for slot, port in self.slots().items():
            if port not in used:
                ports[f"idle-{slot}"] = port
        prometheus_local.write_targets(self.dir / "targets.json", ports)

    def wait_scraped(self, timeout: float = 30.0) -> None:
        """Block until Prometheus scrapes every recorded track (file discovery lags a little)."""
        want = {f"127.0.0.1:{t['proc']['port']}" for t in self.read()["tracks"].values()}
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

    def _start_prometheus(self) -> Proc:
        port = procs.free_port()
        data = self.dir / "prometheus-data"
        data.mkdir(parents=True, exist_ok=True)
        rules = sorted((self.dir / "rules").glob("*.yml")) if (self.dir / "rules").is_dir() else []
        config = self.dir / "prometheus.yml"
        config.write_text(
            prometheus_local.render_config(
                targets_file=self.dir / "targets.json",
                scrape_interval=self.settings.scrape_interval_seconds,
                rule_files=rules,
            )
        )
        self.write_targets()
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
            log=self.logs / "prometheus.log",
        )
        with self.locked() as state:
            state["prometheus"] = proc.to_json()
        procs.wait_http(proc, f"http://127.0.0.1:{port}/-/ready", timeout=30)
        return proc

    def _start_haproxy(self, stable_port: int) -> Proc:
        port = procs.free_port()
        config = self.dir / "haproxy.cfg"
        config.write_text(
            haproxy.render_config(
                port=port, stats_socket=self.dir / "haproxy.sock", stable_port=stable_port
            )
        )
        binary = shutil.which("haproxy") or shutil.which(
            "haproxy", path="/usr/sbin:/usr/local/sbin"
        )
        proc = procs.spawn(
            "haproxy",
            [binary or "haproxy", "-f", str(config), "-db"],
            port=port,
            log=self.logs / "haproxy.log",
        )
        with self.locked() as state:
            state["haproxy"] = proc.to_json()
            state["weight"] = 0
        procs.wait_http(proc, f"http://127.0.0.1:{port}/haproxy-metrics", timeout=15)
        return proc

    def _start_traffic(self, gateway: str) -> Proc:
        keys = self.dir / "tenant-keys.json"
        self.tenants()
        proc = procs.spawn(
            "traffic",
            [
                sys.executable,
                "-m",
                "delivery.traffic",
                "--gateway",
                gateway,
                "--tenants",
                str(keys),
                "--stats",
                str(self.dir / "traffic.json"),
                "--rps",
                str(self.settings.traffic_rps),
                "--max-seconds",
                str(self.settings.traffic_max_seconds),
            ],
            port=0,
            log=self.logs / "traffic.log",
        )
        with self.locked() as state:
            state["traffic"] = proc.to_json()
        return proc

    def up(self, initial_stable: Launch | None) -> None:
        """Start whatever is not running. `initial_stable` is used only when no stable exists."""
        for sub in (self.versions_dir, self.logs):
            sub.mkdir(parents=True, exist_ok=True)
        self.tenants()
        stable = self.track("stable")
        if stable is None or not procs.alive(stable.proc):
            launch = stable.launch if stable is not None else initial_stable
            if launch is None:
                raise TargetError("no stable version to start the local environment with")
            stable = self.start_service("stable", launch)
            restarted = True
        else:
            restarted = False
        prom = self.proc("prometheus")
        if prom is None or not procs.alive(prom):
            self._start_prometheus()
        self.write_targets()
        proxy = self.proc("haproxy")
        if proxy is None or not procs.alive(proxy):
            proxy = self._start_haproxy(stable.proc.port)
        elif restarted:
            self.runtime.point("stable", stable.proc.port)
        traffic = self.proc("traffic")
        if traffic is None or not procs.alive(traffic):
            self._start_traffic(f"http://127.0.0.1:{proxy.port}")

    def down(self) -> None:
        state = self.read()
        for name in ("traffic", "haproxy"):
            if state.get(name):
                procs.stop(Proc.from_json(state[name]))
        for track in reversed(TRACKS):  # canary first: stable serves until the end
            if state["tracks"].get(track):
                procs.stop(TrackRun.from_json(state["tracks"][track]).proc)
        if state.get("prometheus"):
            procs.stop(Proc.from_json(state["prometheus"]))
        with self.locked() as fresh:
            fresh.clear()
            fresh.update({"tracks": {}, "weight": 0})
        # Built versions go too, including git worktrees registered in the shared repository.
        if self.versions_dir.is_dir():
            for built in sorted(self.versions_dir.iterdir()):
                versions.remove(self.repo, self.versions_dir, built.name)

    def traffic_stats(self) -> dict[str, Any]:
        path = self.dir / "traffic.json"
        if not path.exists():
            return {"counts": {}}
        data: dict[str, Any] = json.loads(path.read_text())
        return data
