"""Recording and alerting rules as data, rendered into a PrometheusRule spec.

SLOs per tenant use multi-window, multi-burn-rate alerts (the SRE workbook's table): page on
5m/1h at 14.4x and 30m/6h at 6x, ticket on 2h/1d at 3x and 6h/3d at 1x the error budget.

Every service series carries `cell` (ADR 138): the service's rules group by it, so an alert
names the cell it fires in, and the cell records have fleet-wide twins that sum without cell.
Series from outside cells have no `cell` label; grouping by it then yields what it did before.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from image_contracts.metrics import REQUEST_DURATION as DURATION
from image_contracts.metrics import REQUESTS
from image_contracts.tracks import Track

Severity = Literal["page", "ticket"]


@dataclass(frozen=True)
class Record:
    name: str
    expr: str


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: Severity
    summary: str
    description: str
    for_: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    # The quantity the alert compares, when it always has data under traffic; exported so an
    # end-to-end test can prove the metric names and labels match what the service exports.
    signal: str | None = None

    @property
    def runbook(self) -> str:
        """docs/runbooks/<slug>.md: kebab-case of the alert name."""
        return re.sub(r"(?<!^)(?=[A-Z])", "-", self.name).lower()


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[Record | Alert, ...]


@dataclass(frozen=True)
class BurnWindow:
    short: str
    long: str
    factor: float
    severity: Severity


BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("5m", "1h", 14.4, "page"),
    BurnWindow("30m", "6h", 6.0, "page"),
    BurnWindow("2h", "1d", 3.0, "ticket"),
    BurnWindow("6h", "3d", 1.0, "ticket"),
)
WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class SloTargets:
    """Objectives per tenant. Latency: the share of requests faster than `latency_le` seconds,
    which must be one of the service's histogram bucket bounds."""

    availability: float = 0.999
    latency: float = 0.99
    latency_le: str = "0.5"

    def __post_init__(self) -> None:
        for name, value in (("availability", self.availability), ("latency", self.latency)):
            if not 0.5 < value < 1:
                raise ValueError(f"SLO {name} objective must be in (0.5, 1), got {value}")
        float(self.latency_le)  # a bucket bound is a number; fail early on typos


@dataclass(frozen=True)
class SaturationLimits:
    queue_per_worker: float = 2.0
    vips_memory_bytes: int = 1_500_000_000
    storage_errors_per_second: float = 0.1


def error_ratio(window: str) -> str:
    # The `or ... * 0` arm yields 0 for tenants that never returned a 5xx, so the ratio always has
    # data under traffic, and it still fires when every request fails.
    return (
        f'(sum by (cell, tenant) (rate({REQUESTS}{{code=~"5.."}}[{window}]))'
        f" or sum by (cell, tenant) (rate({REQUESTS}[{window}])) * 0)"
        f" / sum by (cell, tenant) (rate({REQUESTS}[{window}]))"
    )


def slow_ratio(window: str, le: str) -> str:
    return (
        f'1 - sum by (cell, tenant) (rate({DURATION}_bucket{{le="{le}"}}[{window}]))'
        f" / sum by (cell, tenant) (rate({DURATION}_count[{window}]))"
    )


def record_name(slo: str, window: str) -> str:
    return f"tenant:image_service_{slo}_errors:ratio_rate{window}"


def _burn_alert(
    slo: str, objective: float, severity: Severity, what: str, ratio: Callable[[str], str]
) -> Alert:
    budget = round(1 - objective, 6)
    arms = [
        f"({record_name(slo, w.short)} > ({w.factor} * {budget})"
        f" and {record_name(slo, w.long)} > ({w.factor} * {budget}))"
        for w in BURN_WINDOWS
        if w.severity == severity
    ]
    title = slo.capitalize()
    return Alert(
        name=f"ImageService{title}BudgetBurn{'Page' if severity == 'page' else 'Ticket'}",
        expr="\n or ".join(arms),
        severity=severity,
        labels=(("slo", slo),),
        summary=f"Tenant {{{{ $labels.tenant }}}} is burning its {slo} error budget",
        description=(
            f"{what} for tenant {{{{ $labels.tenant }}}} in cell {{{{ $labels.cell }}}} exceeds "
            f"the burn rate that spends the {objective:.2%} {slo} objective's budget too fast "
            f"({severity})."
        ),
        # The raw ratio, not the recorded series: a plain Prometheus without these rules can run it.
        signal=ratio("5m" if severity == "page" else "2h"),
    )


def slo_group(targets: SloTargets) -> RuleGroup:
    records = [Record(record_name("availability", w), error_ratio(w)) for w in WINDOWS]
    records += [
        Record(record_name("latency", w), slow_ratio(w, targets.latency_le)) for w in WINDOWS
    ]
    alerts = [
        _burn_alert("availability", targets.availability, sev, "The 5xx ratio", error_ratio)
        for sev in ("page", "ticket")
    ] + [
        _burn_alert(
            "latency",
            targets.latency,
            sev,
            f"The share of requests slower than {targets.latency_le}s",
            lambda w: slow_ratio(w, targets.latency_le),
        )
        for sev in ("page", "ticket")
    ]
    return RuleGroup("image-service-slo", (*records, *alerts))


def saturation_group(limits: SaturationLimits) -> RuleGroup:
    by = "by (cell, track, version, instance)"
    queue = f"max {by} (image_service_transform_queue_depth)"
    workers = f"max {by} (image_service_transform_workers)"
    memory = f"max {by} (image_service_vips_memory_bytes)"
    storage = (
        "sum by (cell, track, version, backend, operation) "
        "(rate(image_service_storage_errors_total[5m]))"
    )
    return RuleGroup(
        "image-service-saturation",
        (
            Alert(
                name="ImageServiceTransformQueueBacklog",
                expr=f"{queue} > {limits.queue_per_worker} * {workers}",
                for_="10m",
                severity="ticket",
                summary="Transform queue backlog on {{ $labels.instance }}",
                description=(
                    "The transform queue on {{ $labels.instance }} ({{ $labels.track }}) holds "
                    f"more than {limits.queue_per_worker} jobs per worker for 10 minutes."
                ),
                signal=queue,
            ),
            Alert(
                name="ImageServiceVipsMemoryHigh",
                expr=f"{memory} > {limits.vips_memory_bytes}",
                for_="10m",
                severity="ticket",
                summary="libvips memory high on {{ $labels.instance }}",
                description=(
                    "libvips on {{ $labels.instance }} ({{ $labels.track }}) tracks more than "
                    f"{limits.vips_memory_bytes} bytes for 10 minutes."
                ),
                signal=memory,
            ),
            Alert(
                name="ImageServiceStorageErrors",
                expr=f"{storage} > {limits.storage_errors_per_second}",
                for_="5m",
                severity="page",
                summary="Storage {{ $labels.operation }} errors on {{ $labels.backend }}",
                description=(
                    "The service fails {{ $labels.operation }} calls to {{ $labels.backend }} "
                    f"faster than {limits.storage_errors_per_second}/s for 5 minutes."
                ),
            ),
        ),
    )


CELL_REQUESTS = "cell_code:image_service_requests:rate5m"
FLEET_REQUESTS = "code:image_service_requests:rate5m"
CELL_ERRORS = "cell:image_service_errors:ratio_rate5m"
FLEET_ERRORS = "fleet:image_service_errors:ratio_rate5m"


def cells_group() -> RuleGroup:
    """Per cell and fleet-wide request rates and 5xx ratios: the fleet is the cells summed
    without `cell`, so one Thanos Query over every cell's Prometheus gives both views."""
    errors = '{code=~"5.."}'
    return RuleGroup(
        "image-service-cells",
        (
            Record(CELL_REQUESTS, f"sum by (cell, code) (rate({REQUESTS}[5m]))"),
            Record(FLEET_REQUESTS, f"sum without (cell) ({CELL_REQUESTS})"),
            Record(
                CELL_ERRORS,
                f"(sum by (cell) ({CELL_REQUESTS}{errors}) or sum by (cell) ({CELL_REQUESTS}) * 0)"
                f" / sum by (cell) ({CELL_REQUESTS})",
            ),
            Record(
                FLEET_ERRORS,
                f"(sum without (cell, code) ({CELL_REQUESTS}{errors})"
                f" or sum without (cell, code) ({CELL_REQUESTS}) * 0)"
                f" / sum without (cell, code) ({CELL_REQUESTS})",
            ),
        ),
    )


@dataclass(frozen=True)
class CanaryLimits:
    """A canary failing more than `error_ratio` of one tenant's requests (over 1m): the judge
    aborts it within a step; this alert tells the people watching, on the same data."""

    error_ratio: float = 0.05


def canary_group(limits: CanaryLimits) -> RuleGroup:
    by = "by (cell, tenant, version)"
    canary = f'{{track="{Track.CANARY.value}"}}'
    failing = f'{{track="{Track.CANARY.value}", code=~"5.."}}'
    ratio = f"sum {by} (rate({REQUESTS}{failing}[1m])) / sum {by} (rate({REQUESTS}{canary}[1m]))"
    return RuleGroup(
        "image-service-delivery",
        (
            Alert(
                name="ImageServiceCanaryErrors",
                expr=f"{ratio} > {limits.error_ratio}",
                severity="ticket",
                summary="Canary {{ $labels.version }} fails tenant {{ $labels.tenant }}",
                description=(
                    "The canary {{ $labels.version }} in cell {{ $labels.cell }} answers more "
                    f"than {limits.error_ratio:.0%} of tenant {{{{ $labels.tenant }}}}'s requests "
                    "with a 5xx over the last minute."
                ),
            ),
        ),
    )


def platform_health_group() -> RuleGroup:
    return RuleGroup(
        "metrics-pipeline-health",
        (
            Alert(
                name="ThanosSidecarUploadFailing",
                expr="sum by (namespace, pod) (rate(thanos_shipper_upload_failures_total[5m])) > 0",
                for_="15m",
                severity="ticket",
                summary="Thanos sidecar {{ $labels.pod }} fails to upload blocks",
                description=(
                    "The Thanos sidecar in {{ $labels.pod }} has failed block uploads to object "
                    "storage for 15 minutes; long-term metrics and the canary judge's history are "
                    "at risk."
                ),
            ),
            Alert(
                name="ThanosCompactHalted",
                expr="max by (namespace, job) (thanos_compact_halted) == 1",
                for_="5m",
                severity="ticket",
                summary="Thanos compactor {{ $labels.job }} has halted",
                description=(
                    "The compactor {{ $labels.job }} halted on an error: no compaction, "
                    "downsampling or retention runs until it is fixed."
                ),
            ),
            Alert(
                name="PrometheusRuleEvaluationFailing",
                expr="sum by (namespace, pod) "
                "(rate(prometheus_rule_evaluation_failures_total[5m])) > 0",
                for_="15m",
                severity="page",
                summary="Prometheus {{ $labels.pod }} fails to evaluate rules",
                description=(
                    "Prometheus {{ $labels.pod }} has failed rule evaluations for 15 minutes: "
                    "alerts, including SLO burn alerts, may be silently missing."
                ),
            ),
            Alert(
                name="PrometheusTsdbCompactionsFailing",
                expr="sum by (namespace, pod) "
                "(increase(prometheus_tsdb_compactions_failed_total[3h])) > 0",
                for_="30m",
                severity="ticket",
                summary="Prometheus {{ $labels.pod }} TSDB compactions fail",
                description=(
                    "Prometheus {{ $labels.pod }} failed TSDB compactions in the last 3 hours: "
                    "blocks may not reach the Thanos sidecar."
                ),
            ),
        ),
    )


def all_groups(
    targets: SloTargets | None = None, limits: SaturationLimits | None = None
) -> tuple[RuleGroup, ...]:
    return (
        slo_group(targets or SloTargets()),
        saturation_group(limits or SaturationLimits()),
        cells_group(),
        canary_group(CanaryLimits()),
        platform_health_group(),
    )


def all_alerts(groups: tuple[RuleGroup, ...]) -> tuple[Alert, ...]:
    return tuple(r for g in groups for r in g.rules if isinstance(r, Alert))


def render(groups: tuple[RuleGroup, ...], runbook_base_url: str) -> dict[str, Any]:
    """A Prometheus rule file body (`{"groups": [...]}`), which is also a PrometheusRule spec."""
    base = runbook_base_url.rstrip("/")
    out: list[dict[str, Any]] = []
    for group in groups:
        rules: list[dict[str, Any]] = []
        for rule in group.rules:
            if isinstance(rule, Record):
                rules.append({"record": rule.name, "expr": rule.expr})
                continue
            body: dict[str, Any] = {
                "alert": rule.name,
                "expr": rule.expr,
                "labels": {"severity": rule.severity, **dict(rule.labels)},
                "annotations": {
                    "summary": rule.summary,
                    "description": rule.description,
                    "runbook_url": f"{base}/{rule.runbook}.md",
                },
            }
            if rule.for_:
                body["for"] = rule.for_
            rules.append(body)
        out.append({"name": group.name, "rules": rules})
    return {"groups": out}
