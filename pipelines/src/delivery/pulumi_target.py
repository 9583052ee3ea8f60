"""`PulumiTarget`: the `Target` protocol over a Pulumi stack, through the Automation API.

Thin on purpose. A version delivery drives the env's service stack (`<env>-service`, config in
environments/Pulumi.<env>-service.yaml): it sets the three delivery keys, previews and runs `up`
on that stack alone. A platform delivery previews and applies the `<env>-platform` stack. The
stack's lock gives one delivery per env. The delivery keys' truth is the service stack's state
(its exports), read back before the first change, so a fresh checkout never rolls a version
back. Traffic moves only to pods that are already Ready: each step that starts or stops pods
is its own `up` (ADR 077). An update plan, where used, only narrows what `up` may do; nothing
depends on it. Post-deploy checks run in the canary pod through testinfra's kubectl backend.
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

    def outputs(self) -> Any: ...

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


def platform_stack_name(service_stack: str) -> str:
    """`<env>-service[-<cell>]` -> `<env>-platform` (the stack names of ADR 070)."""
    env, sep, _ = service_stack.partition("-service")
    if not sep or not env:
        raise TargetError(f"stack {service_stack!r} is not a service stack (<env>-service)")
    return f"{env}-platform"


def _select(auto: Any, name: str, work_dir: str) -> Any:
    try:
        return auto.select_stack(stack_name=name, work_dir=work_dir)
    except auto.StackNotFoundError:
        raise TargetError(
            f"stack {name} does not exist in this backend: create it as the README's AWS path "
            "says (bootstrap workflow), then deliver"
        ) from None


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
        platform: StackLike | None = None,
    ) -> None:
        self.stack = stack
        self.platform = platform if platform is not None else stack
        self.settings = settings
        self.repo = repo
        self.plan_dir = plan_dir or Path(tempfile.mkdtemp(prefix="deliver-plan-"))
        self.plan: Path | None = None
        self.synced = False

    @classmethod
    def select(cls, repo: Path, settings: PulumiSettings) -> "PulumiTarget":
        from pulumi import automation as auto

        work_dir = str(repo / settings.work_dir)
        stack: StackLike = _select(auto, settings.stack, work_dir)
        platform: StackLike = _select(auto, platform_stack_name(settings.stack), work_dir)
        return cls(stack, settings, repo, platform=platform)

    def _set(self, key: str, value: str) -> None:
        self._sync()
        self.stack.set_config(key, _config_value(value))

    def _sync(self) -> None:
        """Copy the delivery keys from the stack's state (its exports) into its config once."""
        if self.synced:
            return
        self.synced = True
        outputs = self.stack.outputs() or {}
        for key in (STABLE, CANARY, WEIGHT):
            item = outputs.get(key.split(":", 1)[1])
            if item is not None:
                self.stack.set_config(key, _config_value(str(getattr(item, "value", item))))

    def _up(self, stack: StackLike | None = None) -> None:
        self._sync()
        kwargs: dict[str, Any] = {"on_output": print}
        if self.plan is not None:
            kwargs["plan"] = str(self.plan)
            self.plan = None  # a plan is good for exactly the change it previewed
        (stack or self.stack).up(**kwargs)

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
        self._sync()
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
        return self._preview("platform", self.platform)

    def _preview(self, plan_name: str, stack: StackLike | None = None) -> Preview:
        """Preview, collecting per-resource ops; keep the update plan so `up` applies just it."""
        events: list[Any] = []
        kwargs: dict[str, Any] = {"on_event": events.append}
        if self.settings.use_update_plan:
            self.plan = self.plan_dir / f"{self.settings.stack}-{plan_name}.plan.json"
            kwargs["plan"] = str(self.plan)
        self._sync()
        result = (stack or self.stack).preview(**kwargs)
        summary = getattr(result, "change_summary", {}) or {}
        return Preview(
            ops=ops_from_events(events),
            change_summary={str(getattr(k, "value", k)): int(v) for k, v in summary.items()},
        )

    def apply_platform(self) -> None:
        self._up(self.platform)

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
        # Stable rolls to the canary's version while canary pods still serve their share...
        self._set(STABLE, canary)
        self._up()
        # ...then traffic leaves the canary and baseline, and only then do their pods stop.
        self._set(WEIGHT, "0")
        self._up()
        self._set(CANARY, "")
        self._up()

    def abort(self) -> None:
        self.plan = None
        # Traffic back to stable first; the canary's pods stop in the next update.
        self._set(WEIGHT, "0")
        self._up()
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
