"""Typed stack configuration: frozen dataclasses parsed from the raw `image-platform:*` values.

Parsing is a pure function over the strings Pulumi hands the program (objects and arrays arrive as
JSON text), so every rule about bad input is testable without Pulumi.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from image_contracts import tenants as tenants_contract
from image_contracts.stacks import (
    CANARY_VERSION_KEY,
    CANARY_WEIGHT_KEY,
    PROJECT,
    STABLE_VERSION_KEY,
)
from image_contracts.versions import version_error

from infra.layers import Layer, prefix

# EKS standard-support versions at the time of writing; extended support costs extra.
SUPPORTED_KUBERNETES = ("1.31", "1.32", "1.33", "1.34")
MIN_PROMETHEUS_RETENTION_HOURS = 6
MIN_THANOS_RETENTION_DAYS = 11  # "over 10 days"
MAX_CANARY_WEIGHT = 50  # canary + baseline = 2 * weight must leave stable its share
# Signing secrets the platform generates and mounts; tenants refer to them as file:<dir>/<name>.
SIGNING_DIR = "/etc/image-service/signing"
# One lifecycle rule per tenant (renditions live under <tenant>/renditions/); S3 allows 1000.
MAX_TENANTS = 900
# IAM's ceiling for a role's maximum session (MaxSessionDuration, seconds).
MAX_ROLE_SESSION_SECONDS = 12 * 3600

NatStrategy = Literal["single", "onePerAz"]

# Every key each layer's program reads; a stack file holds only its layer's keys (`aws:region`
# aside). The service layer's first three keys belong to the delivery pipeline.
LAYER_KEYS: dict[Layer, tuple[str, ...]] = {
    Layer.ACCOUNT: (
        "githubRepository",
        "githubBranch",
        "githubOwnerId",
        "githubRepositoryId",
        "deliveryEnvironments",
        "deliverSessionSeconds",
        "imageRepository",
        "stateBucket",
        "ledgerBuckets",
        "serviceLinkedRoles",
    ),
    Layer.ENVIRONMENT: (
        "vpcCidr",
        "availabilityZones",
        "natStrategy",
        "kubernetesVersion",
        "clusterAdminRoleArns",
        "runnerInstanceType",
        "nodeInstanceTypes",
        "nodeMinSize",
        "nodeDesiredSize",
        "nodeMaxSize",
        "nodeVolumeGiB",
        "renditionsExpireDays",
        "noncurrentExpireDays",
        "accessLogsExpireDays",
        "imageTenants",
    ),
    Layer.PLATFORM: (
        "prometheusRetentionHours",
        "prometheusVolumeGiB",
        "prometheusReplicas",
        "thanosRetentionDays",
        "grafanaHost",
        "serviceHost",
        "acmeEmail",
        "alertEmail",
        "githubRepository",
        "githubBranch",
    ),
    Layer.SERVICE: (
        STABLE_VERSION_KEY,
        CANARY_VERSION_KEY,
        CANARY_WEIGHT_KEY,
        "stableReplicas",
        "stableMaxReplicas",
        "canaryReplicas",
        "tenants",
    ),
}
KEYS = tuple(sorted({k for keys in LAYER_KEYS.values() for k in keys}))


class ConfigError(ValueError):
    """A stack config value is missing or invalid; the message names the key."""


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str
    availability_zones: int
    nat: NatStrategy


@dataclass(frozen=True)
class ClusterConfig:
    kubernetes_version: str
    # The API endpoint is private in every environment: CI reaches it from the environment's
    # runner inside the VPC, people through SSM port forwarding from that runner (ADR 073).
    admin_role_arns: tuple[str, ...]
    runner_instance_type: str
    instance_types: tuple[str, ...]
    min_nodes: int
    desired_nodes: int
    max_nodes: int
    node_volume_gib: int


@dataclass(frozen=True)
class StorageConfig:
    renditions_expire_days: int
    noncurrent_expire_days: int
    access_logs_expire_days: int


@dataclass(frozen=True)
class ObservabilityConfig:
    prometheus_retention_hours: int
    prometheus_volume_gib: int
    prometheus_replicas: int
    thanos_retention_days: int
    grafana_host: str
    alert_email: str = ""


@dataclass(frozen=True)
class ServiceConfig:
    stable_version: str
    canary_version: str
    canary_weight: int
    stable_replicas: int
    stable_max_replicas: int
    canary_replicas: int
    tenants_toml: str
    tenant_ids: tuple[str, ...]
    signing_secret_names: tuple[str, ...]

    @property
    def canary_active(self) -> bool:
        return bool(self.canary_version) and self.canary_weight > 0

    @property
    def weights(self) -> tuple[int, int, int]:
        """(stable, baseline, canary) percent; the baseline mirrors the canary's weight."""
        w = self.canary_weight if self.canary_active else 0
        return (100 - 2 * w, w, w)


@dataclass(frozen=True)
class CiConfig:
    github_repository: str
    github_branch: str


@dataclass(frozen=True)
class AccountConfig:
    region: str
    ci: CiConfig
    # Numeric ids: repositories created after 2026-07-15 get OIDC subjects
    # `repo:OWNER@OWNER_ID/REPO@REPO_ID:...`; 0 when unknown (older repositories).
    github_owner_id: int
    github_repository_id: int
    # GitHub environments whose delivery job assumes a role of its own (`environment:` jobs).
    delivery_environments: tuple[str, ...]
    deliver_session_seconds: int
    image_repository: str  # the ECR repository name the workflow pushes to
    state_bucket: str
    ledger_buckets: tuple[str, ...]
    service_linked_roles: tuple[str, ...]  # AWS service names, e.g. autoscaling.amazonaws.com


@dataclass(frozen=True)
class EnvironmentConfig:
    environment: str
    region: str
    network: NetworkConfig
    cluster: ClusterConfig
    storage: StorageConfig
    tenant_ids: tuple[str, ...]

    @property
    def name(self) -> str:
        return prefix(self.environment)


@dataclass(frozen=True)
class PlatformConfig:
    environment: str
    region: str
    observability: ObservabilityConfig
    service_host: str
    acme_email: str
    ci: CiConfig

    @property
    def name(self) -> str:
        return prefix(self.environment)


@dataclass(frozen=True)
class ServiceLayerConfig:
    environment: str
    region: str
    service: ServiceConfig
    cell: str = ""  # empty: the environment's one service stack; else one cell's (ADR 136)

    @property
    def name(self) -> str:
        return prefix(self.environment)


class _Reader:
    def __init__(self, raw: Mapping[str, str], layer: Layer) -> None:
        self._raw = raw
        self._layer = layer

    def _get(self, key: str) -> str | None:
        if key not in LAYER_KEYS[self._layer]:
            raise KeyError(f"{key} is not declared in LAYER_KEYS[{self._layer}]")
        return self._raw.get(key, self._raw.get(f"{PROJECT}:{key}"))

    def string(self, key: str, default: str | None = None) -> str:
        value = self._get(key)
        if value is None:
            if default is None:
                raise ConfigError(f"{PROJECT}:{key} is required")
            return default
        return value

    def integer(self, key: str, default: int | None = None, lo: int = 0, hi: int = 10**6) -> int:
        text = self._get(key)
        if text is None:
            if default is None:
                raise ConfigError(f"{PROJECT}:{key} is required")
            value = default
        else:
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(f"{PROJECT}:{key} must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise ConfigError(f"{PROJECT}:{key} must be in [{lo}, {hi}], got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        text = self._get(key)
        if text is None:
            return default
        if text.lower() not in {"true", "false"}:
            raise ConfigError(f"{PROJECT}:{key} must be true or false, got {text!r}")
        return text.lower() == "true"

    def strings(self, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        text = self._get(key)
        if text is None:
            if default is None:
                raise ConfigError(f"{PROJECT}:{key} is required")
            return default
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"{PROJECT}:{key} must be a JSON/YAML list of strings") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{PROJECT}:{key} must be a list of strings, got {text!r}")
        return tuple(value)


_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _image_ref(key: str, value: str, *, optional: bool) -> str:
    if value == "":
        if optional:
            return value
        raise ConfigError(
            f"{PROJECT}:{key} is required: a pushed image tag (README, first service up)"
        )
    # One version syntax for every layer (image tag, label value, service env): the contract's.
    problem = version_error(value)
    if problem:
        raise ConfigError(f"{PROJECT}:{key}: {problem}")
    return value


def _host(key: str, value: str) -> str:
    if not _HOST.match(value):
        raise ConfigError(f"{PROJECT}:{key} must be a lower-case DNS name, got {value!r}")
    return value


def _cidrs(key: str, values: tuple[str, ...], *, allow_world: bool) -> tuple[str, ...]:
    for value in values:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise ConfigError(f"{PROJECT}:{key}: {value!r} is not a CIDR") from None
        if net.prefixlen == 0 and not allow_world:
            raise ConfigError(f"{PROJECT}:{key}: the whole internet is not a restriction")
    return values


def parse_tenants(text: str, cell: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tenant ids, generated signing-secret names) of the service's TOML tenants file.

    The file's format is the contract's (image_contracts.tenants); the platform needs the ids
    and refuses signing secrets it cannot provide (env: refs, files elsewhere). A cell's stack
    holds that cell's tenants only: each must be placed (`cell = ...`) in this very cell."""
    key = f"{PROJECT}:tenants"
    try:
        entries = tenants_contract.parse_text(text)
    except tenants_contract.TenantsFileError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if len(entries) > MAX_TENANTS:
        raise ConfigError(f"{key}: at most {MAX_TENANTS} tenants (S3 lifecycle rule limit)")
    names: list[str] = []
    for tid, entry in entries.items():
        if cell and entry.cell != cell:
            raise ConfigError(
                f"{key}: tenant {tid} is placed in cell {entry.cell!r}, not this stack's {cell!r}"
            )
        for ref in entry.signing_secrets:
            name = ref.removeprefix(f"file:{SIGNING_DIR}/")
            if name == ref or not tenants_contract.is_tenant_id(name):
                raise ConfigError(
                    f"{key}: tenant {tid} signing secret {ref!r} must be "
                    f"file:{SIGNING_DIR}/<name> (the platform generates and mounts it)"
                )
            names.append(name)
    return tuple(entries), tuple(sorted(set(names)))


def _check_stack(environment: str, region: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9]{1,15}", environment):
        raise ConfigError(f"environment {environment!r} must be a short lower-case word")
    if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", region):
        raise ConfigError(f"aws:region {region!r} is not an AWS region")


def _ci(r: _Reader) -> CiConfig:
    repo = r.string("githubRepository")
    if not _REPO.match(repo):
        raise ConfigError(f"{PROJECT}:githubRepository must be owner/name, got {repo!r}")
    return CiConfig(github_repository=repo, github_branch=r.string("githubBranch", "main"))


_BUCKET = re.compile(r"(?!xn--)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


def _bucket(key: str, value: str) -> str:
    if not _BUCKET.fullmatch(value) or ".." in value:
        raise ConfigError(f"{PROJECT}:{key}: {value!r} is not a valid S3 bucket name")
    return value


def parse_account(raw: Mapping[str, str], *, region: str) -> AccountConfig:
    r = _Reader(raw, Layer.ACCOUNT)
    _check_stack("account", region)
    envs = r.strings("deliveryEnvironments", ())
    for env in envs:
        _check_stack(env, region)
    repository = r.string("imageRepository", "image-service")
    if not re.fullmatch(
        r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", repository
    ):
        raise ConfigError(f"{PROJECT}:imageRepository {repository!r} is not an ECR repository name")
    return AccountConfig(
        region=region,
        ci=_ci(r),
        github_owner_id=r.integer("githubOwnerId", 0, 0, 10**12),
        github_repository_id=r.integer("githubRepositoryId", 0, 0, 10**12),
        delivery_environments=envs,
        deliver_session_seconds=r.integer(
            "deliverSessionSeconds", MAX_ROLE_SESSION_SECONDS, 3600, MAX_ROLE_SESSION_SECONDS
        ),
        image_repository=repository,
        state_bucket=_bucket("stateBucket", r.string("stateBucket")),
        ledger_buckets=tuple(_bucket("ledgerBuckets", b) for b in r.strings("ledgerBuckets", ())),
        service_linked_roles=r.strings("serviceLinkedRoles", ()),
    )


def parse_environment(
    raw: Mapping[str, str], *, environment: str, region: str
) -> EnvironmentConfig:
    r = _Reader(raw, Layer.ENVIRONMENT)
    _check_stack(environment, region)
    nat_text = r.string("natStrategy", "single")
    if nat_text not in ("single", "onePerAz"):
        raise ConfigError(f"{PROJECT}:natStrategy must be single or onePerAz, got {nat_text!r}")
    nat: NatStrategy = "single" if nat_text == "single" else "onePerAz"
    cidr = r.string("vpcCidr", "10.0.0.0/16")
    _cidrs("vpcCidr", (cidr,), allow_world=False)
    network = NetworkConfig(
        cidr=cidr, availability_zones=r.integer("availabilityZones", 3, 2, 3), nat=nat
    )
    if network.availability_zones < 3 and environment != "dev":
        raise ConfigError(f"{PROJECT}:availabilityZones: only dev may run in 2 zones")

    version = r.string("kubernetesVersion")
    if version not in SUPPORTED_KUBERNETES:
        raise ConfigError(
            f"{PROJECT}:kubernetesVersion {version!r} is not in standard support "
            f"({', '.join(SUPPORTED_KUBERNETES)})"
        )
    admins = r.strings("clusterAdminRoleArns", ())
    for arn in admins:
        if not _ROLE_ARN.fullmatch(arn):
            raise ConfigError(f"{PROJECT}:clusterAdminRoleArns: {arn!r} is not an IAM role ARN")
    min_nodes = r.integer("nodeMinSize", 2, 1, 100)
    desired = r.integer("nodeDesiredSize", min_nodes, 1, 100)
    max_nodes = r.integer("nodeMaxSize", max(desired, 3), 1, 100)
    if not min_nodes <= desired <= max_nodes:
        raise ConfigError(f"{PROJECT}: need nodeMinSize <= nodeDesiredSize <= nodeMaxSize")
    cluster = ClusterConfig(
        kubernetes_version=version,
        admin_role_arns=admins,
        runner_instance_type=r.string("runnerInstanceType", "t3.small"),
        instance_types=r.strings("nodeInstanceTypes", ("m6i.large",)),
        min_nodes=min_nodes,
        desired_nodes=desired,
        max_nodes=max_nodes,
        node_volume_gib=r.integer("nodeVolumeGiB", 50, 20, 2000),
    )
    storage = StorageConfig(
        renditions_expire_days=r.integer("renditionsExpireDays", 30, 1, 3650),
        noncurrent_expire_days=r.integer("noncurrentExpireDays", 30, 1, 3650),
        access_logs_expire_days=r.integer("accessLogsExpireDays", 90, 1, 3650),
    )
    tenants = r.strings("imageTenants")
    for tid in tenants:
        if not tenants_contract.is_tenant_id(tid):
            raise ConfigError(f"{PROJECT}:imageTenants: {tid!r} must match [a-z0-9-]{{1,63}}")
    if not tenants or len(tenants) > MAX_TENANTS:
        raise ConfigError(f"{PROJECT}:imageTenants: 1 to {MAX_TENANTS} tenants")
    return EnvironmentConfig(environment, region, network, cluster, storage, tenants)


def parse_platform(raw: Mapping[str, str], *, environment: str, region: str) -> PlatformConfig:
    r = _Reader(raw, Layer.PLATFORM)
    _check_stack(environment, region)
    observability = ObservabilityConfig(
        prometheus_retention_hours=r.integer(
            "prometheusRetentionHours", 24, MIN_PROMETHEUS_RETENTION_HOURS, 24 * 30
        ),
        prometheus_volume_gib=r.integer("prometheusVolumeGiB", 50, 10, 4000),
        prometheus_replicas=r.integer("prometheusReplicas", 1, 1, 5),
        thanos_retention_days=r.integer("thanosRetentionDays", 30, MIN_THANOS_RETENTION_DAYS, 3650),
        grafana_host=_host("grafanaHost", r.string("grafanaHost")),
        alert_email=_email("alertEmail", r.string("alertEmail")),
    )
    return PlatformConfig(
        environment=environment,
        region=region,
        observability=observability,
        service_host=_host("serviceHost", r.string("serviceHost")),
        acme_email=_email("acmeEmail", r.string("acmeEmail")),
        ci=_ci(r),
    )


def _email(key: str, value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,63}", value):
        raise ConfigError(f"{PROJECT}:{key} must be an e-mail address, got {value!r}")
    return value


def parse_service(
    raw: Mapping[str, str], *, environment: str, region: str, cell: str = ""
) -> ServiceLayerConfig:
    """A service stack's config; `cell` (from the stack name) narrows it to one cell's tenants."""
    r = _Reader(raw, Layer.SERVICE)
    _check_stack(environment, region)
    stable_replicas = r.integer("stableReplicas", 2, 1, 100)
    tenants_toml = r.string("tenants")
    tenant_ids, signing_names = parse_tenants(tenants_toml, cell)
    service = ServiceConfig(
        stable_version=_image_ref("stableVersion", r.string("stableVersion"), optional=False),
        canary_version=_image_ref("canaryVersion", r.string("canaryVersion", ""), optional=True),
        canary_weight=r.integer("canaryWeight", 0, 0, MAX_CANARY_WEIGHT),
        stable_replicas=stable_replicas,
        stable_max_replicas=r.integer(
            "stableMaxReplicas", stable_replicas * 3, stable_replicas, 500
        ),
        canary_replicas=r.integer("canaryReplicas", 1, 1, 20),
        tenants_toml=tenants_toml,
        tenant_ids=tenant_ids,
        signing_secret_names=signing_names,
    )
    return ServiceLayerConfig(environment, region, service, cell)
