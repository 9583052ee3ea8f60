"""`PulumiTarget`: the `Target` protocol over a Pulumi stack, through the Automation API.

Thin on purpose: it selects the env's stack (config in environments/Pulumi.<env>.yaml), sets the
three delivery keys, previews and runs `up`. The stack's lock gives one delivery per env. Where
update plans are supported, the plan saved by the preview is what the first `up` applies.
Post-deploy checks run in the canary pod through testinfra's kubectl backend.
"""

import datetime as dt
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Protocol

from image_contracts.stacks import (
    CANARY_VERSION_KEY,
    CANARY_WEIGHT_KEY,
    STABLE_VERSION_KEY,
    config_key,
)

from delivery import postdeploy
from delivery.config import PulumiSettings
from delivery.delta import Preview, ResourceOp, normalise_op
from delivery.target import Check, Endpoints, Health, TargetError, TargetState, VersionInfo

STABLE, CANARY, WEIGHT = (
    config_key(k) for k in (STABLE_VERSION_KEY, CANARY_VERSION_KEY, CANARY_WEIGHT_KEY)
)
CONTAINER_PORT = 8080  # the service's default IMAGE_SERVICE_PORT inside the pod
CONTAINER_VENV = "/app/.venv"


class StackLike(Protocol):
    """The slice of `pulumi.automation.Stack` this target uses (a fake records it in tests)."""

    def get_all_config(self) -> Any: ...

    def set_config(self, key: str, value: Any) -> None: ...

    def preview(self, **kwargs: Any) -> Any: ...

    def up(self, **kwargs: Any) -> Any: ...


def ops_from_events(events: list[Any]) -> tuple[ResourceOp, ...]:
    """Per-resource operations from Automation API engine events (`resource_pre_event`)."""
    ops = []
    for event in events:
        pre = getattr(event, "resource_pre_event", None)
        if pre is None:
            continue
        meta = pre.metadata
        op = getattr(meta.op, "value", meta.op)
        ops.append(ResourceOp(urn=meta.urn, type=meta.type, op=normalise_op(str(op))))
    return tuple(ops)


def _config_value(value: str) -> Any:
    from pulumi.automation import ConfigValue

    return ConfigValue(value=value)


class PulumiTarget:
    def __init__(
        self,
        stack: StackLike,
        settings: PulumiSettings,
        repo: Path,
        plan_dir: Path | None = None,
    ) -> None:
        self.stack = stack
        self.settings = settings
        self.repo = repo
        self.plan_dir = plan_dir or Path(tempfile.mkdtemp(prefix="deliver-plan-"))
        self.plan: Path | None = None

    @classmethod
    def select(cls, repo: Path, settings: PulumiSettings) -> "PulumiTarget":
        from pulumi import automation as auto

        stack = auto.select_stack(stack_name=settings.stack, work_dir=str(repo / settings.work_dir))
        stack_like: StackLike = stack  # type: ignore[assignment]  # keyword-only use of a wide API
        return cls(stack_like, settings, repo)

    def _set(self, key: str, value: str) -> None:
        self.stack.set_config(key, _config_value(value))

    def _up(self) -> None:
        kwargs: dict[str, Any] = {"on_output": print}
        if self.plan is not None:
            kwargs["plan"] = str(self.plan)
            self.plan = None  # a plan is good for exactly the change it previewed
        self.stack.up(**kwargs)

    def resolve(self, version: str) -> VersionInfo:
        if not version or not version.replace("-", "").replace(".", "").isalnum():
            raise TargetError(f"version {version!r}: expected an image tag (commit SHA)")
        try:
            commit_time = subprocess.run(
                ["git", "-C", str(self.repo), "show", "-s", "--format=%cI", version],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        except (subprocess.CalledProcessError, OSError):
            commit_time = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return VersionInfo(version=version, commit=version, commit_time=commit_time)

    def state(self) -> TargetState:
        config = self.stack.get_all_config()

        def get(key: str) -> str:
            item = config.get(key)
            return str(getattr(item, "value", item) or "") if item is not None else ""

        weight = get(WEIGHT)
        return TargetState(get(STABLE), get(CANARY), int(weight) if weight.isdigit() else 0)

    def preview(self, version: VersionInfo) -> Preview:
        self._set(CANARY, version.version)
        self._set(WEIGHT, "0")
        return self._preview(version.version)

    def preview_platform(self) -> Preview:
        return self._preview("platform")

    def _preview(self, plan_name: str) -> Preview:
        """Preview, collecting per-resource ops; keep the update plan so `up` applies just it."""
        events: list[Any] = []
        kwargs: dict[str, Any] = {"on_event": events.append}
        if self.settings.use_update_plan:
            self.plan = self.plan_dir / f"{self.settings.stack}-{plan_name}.plan.json"
            kwargs["plan"] = str(self.plan)
        result = self.stack.preview(**kwargs)
        summary = getattr(result, "change_summary", {}) or {}
        return Preview(
            ops=ops_from_events(events),
            change_summary={str(getattr(k, "value", k)): int(v) for k, v in summary.items()},
        )

    def apply_platform(self) -> None:
        self._up()

    def start_canary(self, version: VersionInfo) -> None:
        self._set(CANARY, version.version)
        self._set(WEIGHT, "0")
        self._up()

    def set_weight(self, weight: int) -> None:
        if not 0 <= weight <= 50:
            raise TargetError(f"canary weight {weight} is outside 0..50")
        self._set(WEIGHT, str(weight))
        self._up()

    def promote(self) -> None:
        canary = self.state().canary_version
        if not canary:
            raise TargetError("no canary to promote")
        self._set(STABLE, canary)
        self._set(CANARY, "")
        self._set(WEIGHT, "0")
        self._up()

    def abort(self) -> None:
        self.plan = None
        self._set(WEIGHT, "0")
        self._set(CANARY, "")
        self._up()

    def kube_host_spec(self, pod: str) -> str:
        spec = f"kubectl://{pod}?namespace={self.settings.kube_namespace}&container=image-service"
        if self.settings.kube_context:
            spec += f"&context={self.settings.kube_context}"
        return spec

    def post_deploy_checks(self) -> list[Check]:
        import testinfra

        argv = [
            "kubectl",
            "get",
            "pods",
            "-n",
            self.settings.kube_namespace,
            "-l",
            "track=canary",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]
        if self.settings.kube_context:
            argv += ["--context", self.settings.kube_context]
        try:
            pod = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
        except (subprocess.CalledProcessError, OSError) as exc:
            return [Check("canary pod found", False, f"kubectl: {exc}")]
        spec = postdeploy.CheckSpec(
            pid=1,
            expected_listen=frozenset({f"0.0.0.0:{CONTAINER_PORT}"}),
            libvips_prefix=CONTAINER_VENV,
        )
        return postdeploy.run_checks(testinfra.get_host(self.kube_host_spec(pod)), spec)

    def metrics_url(self) -> str:
        raise TargetError("the pulumi target reads metrics from metrics.prometheus_url")

    def endpoints(self) -> Endpoints | None:
        # Pods are reachable only inside the cluster: probes and resource checks are skipped
        # with a visible note until a per-track route exists.
        return None

    def health(self) -> tuple[Health, ...]:
        # Kubernetes restarts a dead pod and the mesh drops a not-ready one: no local view.
        return ()
