"""`LocalTarget`: the `Target` protocol over the local environment (processes + HAProxy weights).

Constructing one starts nothing: `up()` does, and only `deliver run` and `deliver env up` call it.
"""

from pathlib import Path

import httpx
import testinfra
from image_contracts.tracks import Track

from delivery import haproxy, postdeploy, procs, tenants, versions
from delivery.config import LocalSettings
from delivery.delta import Preview, ResourceOp
from delivery.local_env import LocalEnvironment
from delivery.target import Check, Endpoints, Health, TargetError, TargetState, VersionInfo
from delivery.versions import Launch

SERVICE_TYPE = "local:process:ImageService"


class LocalTarget:
    def __init__(
        self,
        repo: Path,
        settings: LocalSettings,
        env_name: str = "local",
        env: LocalEnvironment | None = None,  # one cell's processes (delivery.local_cells)
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.env = env or LocalEnvironment(repo, settings, env_name)
        self._pending: dict[str, Launch] = {}

    # --- environment -----------------------------------------------------------------------
    def initial_stable(self) -> Launch:
        info, source = versions.resolve(
            self.repo, self.settings.initial_stable, self.settings.versions
        )
        return versions.materialise(
            self.repo, self.env.versions_dir, info, source, self.env.runtime_python()
        )

    def up(self) -> None:
        stable = self.env.track("stable")
        self.env.up(None if stable is not None else self.initial_stable())

    def down(self) -> None:
        self.env.down()

    # --- Target ----------------------------------------------------------------------------
    def resolve(self, version: str) -> VersionInfo:
        info, source = versions.resolve(self.repo, version, self.settings.versions)
        self._pending[info.version] = versions.materialise(
            self.repo, self.env.versions_dir, info, source, self.env.runtime_python()
        )
        return info

    def launch_for(self, version: str) -> Launch | None:
        """How a resolved version starts (None before `resolve`): a rollout keeps it to resume."""
        return self._pending.get(version)

    def adopt(self, version: str, launch: Launch) -> None:
        """Take a launch resolved by an earlier run (a resumed rollout) as if just resolved."""
        self._pending[version] = launch

    def state(self) -> TargetState:
        env = self.env.read()
        stable, canary = env.track("stable"), env.track("canary")
        return TargetState(
            stable_version=stable.version if stable is not None else "",
            canary_version=canary.version if canary is not None else "",
            canary_weight=env.weight,
        )

    def preview(self, version: VersionInfo) -> Preview:
        urn = f"urn:local:{self.env.env_name}::{SERVICE_TYPE}::"
        return Preview(
            ops=(
                ResourceOp(urn + "canary", SERVICE_TYPE, "create"),
                ResourceOp(urn + "baseline", SERVICE_TYPE, "create"),
                ResourceOp(urn + "stable", SERVICE_TYPE, "same"),
            ),
            change_summary={"create": 2, "same": 1},
        )

    def preview_platform(self) -> Preview:
        # The local environment's platform (HAProxy, Prometheus) is started by `env up`, not
        # delivered: there is never a platform change to apply here.
        return Preview(ops=(), change_summary={})

    def apply_platform(self) -> None:
        return None

    def start_canary(self, version: VersionInfo) -> None:
        stable = self.env.track("stable")
        if stable is None:
            raise TargetError("no stable version runs: run `deliver env up --env local` first")
        launch = self._pending.get(version.version)
        if launch is None:
            raise TargetError(f"version {version.version} was not resolved first")
        self.env.start_pair((Track.BASELINE, stable.launch), (Track.CANARY, launch))
        self.env.write_targets()
        rt = self.env.runtime
        for track in (Track.BASELINE, Track.CANARY):
            run = self.env.track(track)
            assert run is not None
            rt.point(track, run.proc.port)
        self.set_weight(0)
        self.env.wait_scraped()

    def post_deploy_checks(self) -> list[Check]:
        run = self.env.track("canary")
        if run is None:
            raise TargetError("no canary runs")
        venv = Path(run.launch.argv[0]).parent.parent  # the venv, not its interpreter
        spec = postdeploy.CheckSpec(
            pid=run.proc.pid,
            expected_listen=frozenset({f"127.0.0.1:{run.proc.port}"}),
            libvips_prefix=str(venv),
        )
        return postdeploy.run_checks(testinfra.get_host("local://"), spec)

    def set_weight(self, weight: int) -> None:
        if not 0 <= weight <= 50:
            raise TargetError(f"canary weight {weight} is outside 0..50")
        rt = self.env.runtime
        # HAProxy weights are relative: stable + baseline + canary always sum to 100 here.
        for track, value in (
            (Track.CANARY, weight),
            (Track.BASELINE, weight),
            (Track.STABLE, 100 - 2 * weight),
        ):
            if self.env.track(track) is not None or track is Track.STABLE:
                rt.set_weight(track, value)
        self.env.set_weight(weight)

    def _all_to_stable(self) -> None:
        rt = self.env.runtime
        rt.set_weight(Track.STABLE, 100)
        for track in (Track.CANARY, Track.BASELINE):
            rt.set_weight(track, 0)
        self.env.set_weight(0)

    def _remove_canary_and_baseline(self) -> None:
        for track in (Track.CANARY, Track.BASELINE):
            self.env.stop_track(track)
        self.env.write_targets()

    def promote(self) -> None:
        canary = self.env.track("canary")
        old = self.env.track("stable")
        if canary is None:
            raise TargetError("no canary to promote")
        # A new stable process (track label stable) takes over before anything is removed.
        new = self.env.start_service("stable", canary.launch)
        self.env.write_targets()
        self.env.runtime.point("stable", new.proc.port)
        self._all_to_stable()
        if old is not None:
            procs.stop(old.proc)
        self._remove_canary_and_baseline()

    def abort(self) -> None:
        self._all_to_stable()
        self._remove_canary_and_baseline()

    def metrics_url(self) -> str:
        return self.env.prometheus_url()

    def endpoints(self) -> Endpoints | None:
        runs = {t: self.env.track(t) for t in (Track.STABLE, Track.BASELINE, Track.CANARY)}
        if any(run is None for run in runs.values()):
            return None
        url = {t: f"http://127.0.0.1:{run.proc.port}" for t, run in runs.items() if run}
        first = tenants.keys(self.env.keys_file, self.settings.tenants)[0][0]
        return Endpoints(
            stable=url[Track.STABLE],
            baseline=url[Track.BASELINE],
            canary=url[Track.CANARY],
            tenant=first.id,
            api_key=first.key,
            gateway_metrics=f"{self.env.gateway_url()}{haproxy.METRICS_PATH}",
        )

    def health(self) -> tuple[Health, ...]:
        out = []
        for track in (Track.CANARY, Track.BASELINE):
            run = self.env.track(track)
            if run is None:
                continue
            if not procs.alive(run.proc):
                status = procs.exit_status(run.proc)
                out.append(Health(track, alive=False, ready=False, exit_status=status))
                continue
            ready, detail = _ready(run.proc.port)
            out.append(Health(track, alive=True, ready=ready, detail=detail))
        return tuple(out)


def _ready(port: int, timeout: float = 3.0) -> tuple[bool, str]:
    """/readyz answers 200 (ready), or why not. A slow answer on a loaded machine is not a
    verdict: only a refusal or a non-200 answer counts as not ready."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=timeout)
    except httpx.ConnectError as exc:
        return False, f"refuses connections ({exc})"
    except httpx.HTTPError:
        return True, "slow to answer /readyz"
    if response.status_code != 200:
        return False, f"/readyz answered {response.status_code} {response.text[:80]}"
    return True, ""
