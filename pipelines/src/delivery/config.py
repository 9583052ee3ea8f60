"""Delivery policy per environment, read from `environments/delivery.<env>.yaml`.

Parsing is strict: an unknown key, a wrong type or an impossible value is a clear error naming the
file and the key, never a silent default. The `judge` section is handed to the judge's own policy
type (`delivery.judge_policy.JudgePolicy.from_mapping`).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from delivery.delta import DeltaPolicy


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    weight: int  # percent to the canary; the baseline gets the same
    bake_seconds: float


@dataclass(frozen=True)
class LocalVersion:
    """A named version for the local target: a source plus extra env (fault injection)."""

    source: str  # "worktree" or a git commit-ish
    env: Mapping[str, str] = field(default_factory=dict)
    # worktree only: a unified diff (paths from the repository root, e.g. a/service/src/...)
    # applied to the snapshot: a regression made the way a person would make it.
    patch: str = ""


@dataclass(frozen=True)
class LocalSettings:
    state_dir: str = ".state/local"
    scrape_interval_seconds: float = 1.0
    traffic_rps: float = 40.0
    traffic_max_seconds: float = 3600.0
    tenants: tuple[str, ...] = ("acme", "globex", "initech", "umbrella")
    initial_stable: str = "HEAD"
    run_as_user: str = "nobody"  # used only when started as root
    versions: Mapping[str, LocalVersion] = field(default_factory=dict)


@dataclass(frozen=True)
class PulumiSettings:
    stack: str
    work_dir: str = "."
    use_update_plan: bool = True
    kube_namespace: str = "image-service"
    kube_context: str = ""


@dataclass(frozen=True)
class DeliveryConfig:
    env: str
    target_kind: str  # local | pulumi
    steps: tuple[Step, ...]
    interval_seconds: float  # judge interval inside a step window
    max_extensions: int
    extension_seconds: float
    progress_seconds: float
    prometheus_url: str  # "" for local: the local environment's own Prometheus
    ledger: str
    delta: DeltaPolicy
    judge: Mapping[str, Any]
    local: LocalSettings | None
    pulumi: PulumiSettings | None
    source: str = ""
    checks: Mapping[str, Any] = field(default_factory=dict)  # delivery.step_checks.ChecksPolicy


class _Reader:
    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.where = where
        self.used: set[str] = set()

    def get(self, key: str, default: Any = ..., kind: type | tuple[type, ...] = object) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise ConfigError(f"{self.where}: missing required key {key!r}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in {int, float}):
            raise ConfigError(f"{self.where}.{key}: expected {_name(kind)}, got {value!r}")
        return value

    def sub(self, key: str, default: Any = ...) -> "_Reader":
        return _Reader(self.get(key, default, Mapping), f"{self.where}.{key}")

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key(s) {', '.join(map(repr, unknown))}")


def _name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return "a mapping" if kind is Mapping else kind.__name__


def _positive(value: float, where: str) -> float:
    if value <= 0:
        raise ConfigError(f"{where}: must be > 0, got {value}")
    return value


def _weights(raw: _Reader) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in list(raw.data):
        value = raw.get(key, kind=float)
        if value < 0:
            raise ConfigError(f"{raw.where}.{key}: weights cannot be negative")
        out[str(key)] = value
    return out


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def _steps(value: Any, where: str) -> tuple[Step, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of {{weight, bake_seconds}}")
    steps: list[Step] = []
    for i, item in enumerate(value):
        r = _Reader(item, f"{where}[{i}]")
        weight = r.get("weight", kind=int)
        bake = _positive(r.get("bake_seconds", kind=float), f"{r.where}.bake_seconds")
        r.done()
        # The baseline gets the same weight as the canary, so the canary can hold half at most.
        if not 1 <= weight <= 50:
            raise ConfigError(
                f"{r.where}.weight: must be 1..50 (the baseline takes as much), got {weight}"
            )
        if steps and weight <= steps[-1].weight:
            raise ConfigError(
                f"{r.where}.weight: steps must increase ({steps[-1].weight} -> {weight})"
            )
        steps.append(Step(weight, bake))
    return tuple(steps)


def _delta(r: _Reader) -> DeltaPolicy:
    policy = DeltaPolicy(
        max_changes=r.get("max_changes", kind=int),
        max_risk=r.get("max_risk", kind=float),
        op_weights=_weights(r.sub("op_weights", {})),
        type_weights=_weights(r.sub("type_weights", {})),
        protected_types=_str_list(r.get("protected_types", []), f"{r.where}.protected_types"),
        service_types=_str_list(r.get("service_types"), f"{r.where}.service_types"),
    )
    r.done()
    if policy.max_changes < 0 or policy.max_risk < 0:
        raise ConfigError(f"{r.where}: budgets cannot be negative")
    return policy


def _local(r: _Reader) -> LocalSettings:
    versions: dict[str, LocalVersion] = {}
    vr = r.sub("versions", {})
    for name in list(vr.data):
        v = vr.sub(name)
        env = v.sub("env", {})
        env_values = {str(k): str(env.get(k, kind=(str, int, float))) for k in list(env.data)}
        source = v.get("source", "worktree", str)
        patch = v.get("patch", "", str)
        if patch and source != "worktree":
            raise ConfigError(f"{v.where}.patch: only a worktree version can be patched")
        versions[str(name)] = LocalVersion(source=source, env=env_values, patch=patch)
        v.done()
    settings = LocalSettings(
        state_dir=r.get("state_dir", ".state/local", str),
        scrape_interval_seconds=_positive(
            r.get("scrape_interval_seconds", 1.0, float), f"{r.where}.scrape_interval_seconds"
        ),
        traffic_rps=_positive(r.get("traffic_rps", 40.0, float), f"{r.where}.traffic_rps"),
        traffic_max_seconds=_positive(
            r.get("traffic_max_seconds", 3600.0, float), f"{r.where}.traffic_max_seconds"
        ),
        tenants=_str_list(r.get("tenants", ["acme", "globex", "initech", "umbrella"]), r.where),
        initial_stable=r.get("initial_stable", "HEAD", str),
        run_as_user=r.get("run_as_user", "nobody", str),
        versions=versions,
    )
    r.done()
    if settings.traffic_rps > 500:
        raise ConfigError(f"{r.where}.traffic_rps: at most 500 (loopback load generator)")
    return settings


def _pulumi(r: _Reader) -> PulumiSettings:
    settings = PulumiSettings(
        stack=r.get("stack", kind=str),
        work_dir=r.get("work_dir", ".", str),
        use_update_plan=r.get("use_update_plan", True, bool),
        kube_namespace=r.get("kube_namespace", "image-service", str),
        kube_context=r.get("kube_context", "", str),
    )
    r.done()
    return settings


def parse(data: Any, where: str) -> DeliveryConfig:
    r = _Reader(data, where)
    version = r.get("schema_version", kind=int)
    if version != 1:
        raise ConfigError(f"{where}.schema_version: this tool reads 1, got {version}")
    target = r.sub("target")
    kind = target.get("kind", kind=str)
    local = pulumi = None
    if kind == "local":
        local = _local(target.sub("local", {}))
    elif kind == "pulumi":
        pulumi = _pulumi(target.sub("pulumi"))
    else:
        raise ConfigError(f"{target.where}.kind: expected local or pulumi, got {kind!r}")
    target.done()
    canary = r.sub("canary")
    steps = _steps(canary.get("steps"), f"{canary.where}.steps")
    interval = _positive(
        canary.get("interval_seconds", kind=float), f"{canary.where}.interval_seconds"
    )
    max_ext = canary.get("max_extensions", 2, int)
    if max_ext < 0:
        raise ConfigError(f"{canary.where}.max_extensions: cannot be negative")
    ext_seconds = _positive(canary.get("extension_seconds", kind=float), canary.where)
    progress = _positive(canary.get("progress_seconds", 5.0, float), canary.where)
    canary.done()
    for step in steps:
        if step.bake_seconds < 2 * interval:
            raise ConfigError(
                f"{canary.where}: bake {step.bake_seconds}s holds fewer than two "
                f"{interval}s intervals"
            )
    metrics = r.sub("metrics", {})
    url = metrics.get("prometheus_url", "", str)
    metrics.done()
    if kind == "pulumi" and not url:
        raise ConfigError(f"{where}.metrics.prometheus_url: required for the pulumi target")
    cfg = DeliveryConfig(
        env=r.get("environment", kind=str),
        target_kind=kind,
        steps=steps,
        interval_seconds=interval,
        max_extensions=max_ext,
        extension_seconds=ext_seconds,
        progress_seconds=progress,
        prometheus_url=url,
        ledger=r.get("ledger", kind=str),
        delta=_delta(r.sub("delta")),
        judge=dict(r.get("judge", {}, Mapping)),
        checks=dict(r.get("checks", {}, Mapping)),
        local=local,
        pulumi=pulumi,
        source=where,
    )
    r.done()
    return cfg


def load(env: str, environments_dir: Path) -> DeliveryConfig:
    if not env or not env.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--env {env!r}: expected a plain environment name")
    path = environments_dir / f"delivery.{env}.yaml"
    if not path.is_file():
        known = sorted(p.name[9:-5] for p in environments_dir.glob("delivery.*.yaml"))
        raise ConfigError(f"no delivery policy for env {env!r} ({path}); known: {known}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    cfg = parse(data, str(path))
    if cfg.env != env:
        raise ConfigError(f"{path}: environment is {cfg.env!r}, expected {env!r}")
    return cfg
