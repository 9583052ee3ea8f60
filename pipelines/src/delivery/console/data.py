"""Everything the console reads: ledger records and Prometheus, turned into typed, frozen values.

This is the only module of the console that knows the ledger's records (the typed `Started` /
`StepRecord` / `Finished` of `delivery.ledger`, folded by `deliveries`) and the judge's verdict
mapping inside them, and the only one that talks to Prometheus.

Only named fields are copied out of a record: a field the console does not know (a secret written
by mistake, say) can never reach a page.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from image_contracts.metrics import REQUEST_DURATION_BUCKET, REQUESTS

from delivery import dora
from delivery.ledger import DeliveryView, Finished, Ledger, Outcome, StepResult, deliveries
from delivery.target import Check

AGGREGATE = "aggregate"
RUNNING = "running"
DASHBOARDS_JSON = Path(__file__).with_name("dashboards.json")


# --- ledger values ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DeltaDecision:
    allowed: bool
    kind: str
    changes: int
    risk: float
    reasons: tuple[str, ...]
    summary: tuple[tuple[str, int], ...]  # (op, count)


@dataclass(frozen=True)
class Evidence:
    """One metric on one scope (aggregate or a tenant) at one look, canary against baseline."""

    metric: str
    scope: str
    canary_n: float
    canary_value: float | None
    baseline_n: float
    baseline_value: float | None
    effect: float | None
    effect_unit: str  # "pp" (absolute ratio difference) | "relative"
    interval: tuple[float, float] | None
    p_value: float | None
    p_adjusted: float | None
    alpha: float | None
    result: str  # pass | fail | insufficient | missing
    unit: str  # ratio | seconds | req/interval
    note: str
    tolerance: float | None  # in the effect unit; None when neither record nor policy says


@dataclass(frozen=True)
class Look:
    """A judge look at the end of a step (the ledger records final looks only)."""

    step: int
    weight: int
    started_at: float
    ended_at: float
    bake_seconds: float
    extensions: int
    outcome: str  # pass | fail | inconclusive
    score: float | None
    interim: bool
    reasons: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    metric_status: tuple[tuple[str, str, bool], ...]  # (name, status, critical)
    metrics_error: str


@dataclass(frozen=True)
class PlannedStep:
    weight: int
    bake_seconds: float


@dataclass(frozen=True)
class Delivery:
    id: str
    env: str
    cell: str  # "" until records carry cells
    version: str
    commit: str
    commit_time: float | None
    stable_version: str
    change: str  # service | platform
    target: str
    trigger: str  # "" when the ledger does not record one
    fixes: str
    started_at: float | None
    ended_at: float | None
    outcome: str  # promoted | aborted | refused | applied | running
    reason: str
    delta: DeltaDecision | None
    overrides: tuple[str, ...]
    planned: tuple[PlannedStep, ...]
    checks: tuple[Check, ...]
    looks: tuple[Look, ...]

    @property
    def running(self) -> bool:
        return self.outcome == RUNNING

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class MetricSpec:
    """What the console needs of the judge's policy for one metric: how to chart it."""

    name: str
    kind: str  # error_ratio | latency | latency_tail | request_rate
    quantile: float
    tolerance: float
    per_tenant: bool


def ts(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _evidence(row: Mapping[str, Any], tolerances: Mapping[str, float]) -> Evidence:
    canary = row.get("canary") or {}
    baseline = row.get("baseline") or {}
    interval = row.get("interval")
    pair: tuple[float, float] | None = None
    if isinstance(interval, list) and len(interval) == 2:
        low, high = _num(interval[0]), _num(interval[1])
        pair = (low, high) if low is not None and high is not None else None
    metric = _str(row.get("metric"))
    tolerance = _num(row.get("tolerance"))
    return Evidence(
        metric=metric,
        scope=_str(row.get("scope")),
        canary_n=_num(canary.get("n")) or 0.0,
        canary_value=_num(canary.get("value")),
        baseline_n=_num(baseline.get("n")) or 0.0,
        baseline_value=_num(baseline.get("value")),
        effect=_num(row.get("effect")),
        effect_unit=_str(row.get("effect_unit")),
        interval=pair,
        p_value=_num(row.get("p_value")),
        p_adjusted=_num(row.get("p_adjusted")),
        alpha=_num(row.get("alpha")),
        result=_str(row.get("result")) or "missing",
        unit=_str(row.get("unit")),
        note=_str(row.get("note")),
        tolerance=tolerance if tolerance is not None else tolerances.get(metric),
    )


def _look(step: StepResult, tolerances: Mapping[str, float]) -> Look:
    verdict = step.verdict  # the judge's Verdict.to_json(): the ledger keeps it as a mapping
    metrics = tuple(
        (_str(m.get("name")), _str(m.get("status")), bool(m.get("critical")))
        for m in verdict.get("metrics") or []
        if isinstance(m, Mapping)
    )
    return Look(
        step=step.step,
        weight=step.weight,
        started_at=ts(step.started_at) or 0.0,
        ended_at=ts(step.ended_at) or 0.0,
        bake_seconds=step.bake_seconds,
        extensions=step.extensions,
        outcome=_str(verdict.get("outcome")) or "inconclusive",
        score=_num(verdict.get("score")),
        interim=bool(verdict.get("interim")),
        reasons=tuple(_str(r) for r in verdict.get("reasons") or []),
        evidence=tuple(
            _evidence(row, tolerances)
            for row in verdict.get("evidence") or []
            if isinstance(row, Mapping)
        ),
        metric_status=metrics,
        metrics_error=step.metrics_error,
    )


def _delta(value: Any) -> DeltaDecision | None:
    if not isinstance(value, Mapping):
        return None
    summary = value.get("summary") or {}
    return DeltaDecision(
        allowed=bool(value.get("allowed")),
        kind=_str(value.get("kind")),
        changes=_int(value.get("changes")),
        risk=_num(value.get("risk")) or 0.0,
        reasons=tuple(_str(r) for r in value.get("reasons") or []),
        summary=tuple(sorted((str(k), _int(v)) for k, v in summary.items()))
        if isinstance(summary, Mapping)
        else (),
    )


def delivery_from_view(view: DeliveryView, tolerances: Mapping[str, float]) -> Delivery:
    """One folded delivery (the ledger's typed view) as the console's value. Pure."""
    subject, finished = view.subject, view.finished
    return Delivery(
        id=view.delivery_id,
        env=view.env,
        cell="",  # records carry no cell yet
        version=subject.version,
        commit=subject.commit,
        commit_time=ts(subject.commit_time),
        stable_version=subject.stable_version,
        change=subject.change.value,
        target=subject.target,
        trigger="",  # records carry no trigger yet
        fixes=subject.fixes,
        started_at=ts(subject.started_at),
        ended_at=None if finished is None else ts(finished.ended_at),
        outcome=RUNNING if finished is None else finished.outcome.value,
        reason="" if finished is None else finished.reason,
        delta=_delta(subject.delta),
        overrides=subject.overrides,
        planned=tuple(PlannedStep(p.weight, p.bake_seconds) for p in subject.planned),
        checks=() if finished is None else finished.checks,
        looks=tuple(sorted((_look(s, tolerances) for s in view.steps), key=lambda k: k.started_at)),
    )


def parse_deliveries(
    records: Sequence[Mapping[str, Any]], tolerances: Mapping[str, float] | None = None
) -> tuple[Delivery, ...]:
    """All deliveries in the stored records, newest first. Pure."""
    views = deliveries(records)
    parsed = [delivery_from_view(v, tolerances or {}) for v in views]
    return tuple(reversed(parsed))


@dataclass(frozen=True)
class DoraPoint:
    at: float  # when the delivery that closes this window ended
    change_fail_rate: float | None
    lead_time_seconds: float | None
    deploys_per_day: float | None


@dataclass(frozen=True)
class DoraFigures:
    deliveries: int
    promoted: int
    aborted: int
    failed_changes: int
    window_seconds: float | None  # from the first delivery's start to the last one's end
    deploys_per_day: float | None  # None while the window or the promotions are too few
    lead_time_seconds: float | None
    change_fail_rate: float | None
    rates_sufficient: bool  # enough deliveries for the change-fail rate to be a rate
    time_to_restore_seconds: float | None
    over_time: tuple[DoraPoint, ...]  # rolling over the last `window` finished deliveries


def dora_figures(records: Sequence[Mapping[str, Any]], env: str, window: int = 10) -> DoraFigures:
    """DORA's figures for one environment, overall and rolling over time. Pure."""
    views = deliveries(records, env)
    total = dora.dora(views)

    def ended(view: DeliveryView) -> float:
        return (ts(view.finished.ended_at) if view.finished else None) or 0.0

    finished = sorted(
        (v for v in views if v.outcome in (Outcome.PROMOTED, Outcome.ABORTED)), key=ended
    )
    points = []
    for end in range(1, len(finished) + 1):
        figures = dora.dora(finished[max(0, end - window) : end])
        points.append(
            DoraPoint(
                at=ended(finished[end - 1]),
                change_fail_rate=figures.change_fail_rate,
                lead_time_seconds=figures.lead_time_seconds,
                deploys_per_day=figures.deploys_per_day,
            )
        )
    return DoraFigures(
        deliveries=total.deliveries,
        promoted=total.promoted,
        aborted=total.aborted,
        failed_changes=total.failed_changes,
        window_seconds=total.window_seconds,
        deploys_per_day=total.deploys_per_day,
        lead_time_seconds=total.lead_time_seconds,
        change_fail_rate=total.change_fail_rate,
        rates_sufficient=total.rates_sufficient,
        time_to_restore_seconds=total.time_to_restore_seconds,
        over_time=tuple(points),
    )


def metric_specs(judge_section: Mapping[str, Any] | None) -> tuple[MetricSpec, ...]:
    """The judge policy's metrics (kind, quantile, tolerance) from a delivery config's `judge:`."""
    from delivery.judge_policy import JudgePolicy

    policy = JudgePolicy.from_mapping(judge_section)
    return tuple(
        MetricSpec(m.name, m.kind, m.quantile, m.tolerance, m.per_tenant) for m in policy.metrics
    )


# --- Prometheus ---------------------------------------------------------------------------------
class PrometheusError(RuntimeError):
    pass


@dataclass(frozen=True)
class Series:
    labels: tuple[tuple[str, str], ...]
    points: tuple[tuple[float, float], ...]  # (unix seconds, value); NaN/Inf dropped

    def label(self, name: str) -> str:
        return dict(self.labels).get(name, "")


class Prometheus:
    """The Prometheus (or Thanos Query) HTTP API: `query_range` only."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def query_range(self, expr: str, start: float, end: float, step: float) -> tuple[Series, ...]:
        try:
            resp = self.client.get(
                f"{self.base_url}/api/v1/query_range",
                params={"query": expr, "start": start, "end": end, "step": step},
            )
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"Prometheus at {self.base_url}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"query failed: {body.get('error', body)}")
        return series_from_matrix(body["data"]["result"])


def series_from_matrix(result: Sequence[Mapping[str, Any]]) -> tuple[Series, ...]:
    out = []
    for item in result:
        points = []
        for stamp, raw in item.get("values", []):
            value = float(raw)
            if math.isfinite(value):
                points.append((float(stamp), value))
        labels = tuple(sorted((str(k), str(v)) for k, v in item.get("metric", {}).items()))
        out.append(Series(labels, tuple(points)))
    return tuple(out)


# --- a delivery's window, canary against baseline ---------------------------------------------
@dataclass(frozen=True)
class WindowSeries:
    """Per (metric, scope, track) the values over the delivery's window, one per interval."""

    start: float
    end: float
    values: Mapping[tuple[str, str, str], tuple[tuple[float, float], ...]]
    error: str  # why there is no data, or ""


def _selector(track: str, version: str, extra: str = "") -> str:
    if not version or not all(c.isalnum() or c in "._-" for c in version):
        raise ValueError(f"refusing to put {version!r} into a PromQL selector")
    return f'track="{track}",version="{version}",route=~"/v1/.*"{extra}'


def window_queries(delivery: Delivery, specs: Sequence[MetricSpec], rate: str) -> dict[str, str]:
    """PromQL for the charts of one delivery: canary at its version, baseline at stable. Pure."""

    def both(expr: Callable[[str], str], extra: str = "") -> str:
        canary = expr(_selector("canary", delivery.version, extra))
        baseline = expr(_selector("baseline", delivery.stable_version, extra))
        return f"({canary}) or ({baseline})"

    def counts(sel: str) -> str:
        return f"sum by (track, tenant) (increase({REQUESTS}{{{sel}}}[{rate}]))"

    out = {"requests": both(counts), "errors": both(counts, ',code=~"5.."')}
    for q in sorted({s.quantile for s in specs if s.kind in ("latency", "latency_tail")}):
        for by, name in (("track, tenant", "tenant"), ("track", "aggregate")):

            def quantile(sel: str, q: float = q, by: str = by) -> str:
                return (
                    f"histogram_quantile({q}, sum by ({by}, le) "
                    f"(increase({REQUEST_DURATION_BUCKET}{{{sel}}}[{rate}])))"
                )

            out[f"latency:{q}:{name}"] = both(quantile)
    return out


def fold_window(
    results: Mapping[str, Sequence[Series]], specs: Sequence[MetricSpec]
) -> dict[tuple[str, str, str], tuple[tuple[float, float], ...]]:
    """Query results -> values per (metric, scope, track). Pure."""
    counts: dict[tuple[str, str, str], dict[float, float]] = {}
    for name in ("requests", "errors"):
        for s in results.get(name, ()):
            for scope in (s.label("tenant"), AGGREGATE):
                into = counts.setdefault((name, scope, s.label("track")), {})
                for at, value in s.points:
                    into[at] = into.get(at, 0.0) + value
    out: dict[tuple[str, str, str], tuple[tuple[float, float], ...]] = {}
    for spec in specs:
        if spec.kind == "error_ratio":
            for (name, scope, track), reqs in counts.items():
                if name != "requests":
                    continue
                errs = counts.get(("errors", scope, track), {})
                out[(spec.name, scope, track)] = tuple(
                    (at, min(errs.get(at, 0.0) / n, 1.0)) for at, n in sorted(reqs.items()) if n > 0
                )
        elif spec.kind == "request_rate":
            for (name, scope, track), reqs in counts.items():
                if name == "requests":
                    out[(spec.name, scope, track)] = tuple(sorted(reqs.items()))
        else:
            for by in ("tenant", "aggregate"):
                for s in results.get(f"latency:{spec.quantile}:{by}", ()):
                    scope = s.label("tenant") if by == "tenant" else AGGREGATE
                    out[(spec.name, scope, s.label("track"))] = s.points
    return out


def delivery_window(d: Delivery, now: float) -> tuple[float, float]:
    starts = [look.started_at for look in d.looks if look.started_at]
    ends = [look.ended_at for look in d.looks if look.ended_at]
    start = min(starts) if starts else d.started_at or now
    end = now if d.running else max(ends) if ends else d.ended_at or now
    return start, max(end, start + 1.0)


def read_window(
    prom: Prometheus | None,
    d: Delivery,
    specs: Sequence[MetricSpec],
    interval: float,
    now: float | None = None,
) -> WindowSeries:
    """Query Prometheus for a delivery's window; a failure is reported, never raised."""
    start, end = delivery_window(d, time.time() if now is None else now)
    if prom is None:
        return WindowSeries(start, end, {}, "no Prometheus configured")
    if d.change != "service" or not d.stable_version or not d.looks:
        return WindowSeries(start, end, {}, "")
    step = max(interval, (end - start) / 240)
    rate = f"{round(step * 1000)}ms"
    try:
        queries = window_queries(d, specs, rate)
        results = {k: prom.query_range(q, start, end, step) for k, q in queries.items()}
    except (PrometheusError, ValueError) as exc:
        return WindowSeries(start, end, {}, str(exc))
    values = fold_window(results, specs)
    error = "" if values else "Prometheus holds no samples for this window (retention, or moved)"
    return WindowSeries(start, end, values, error)


# --- the platform's dashboards (exported from platform code as JSON) --------------------------
@dataclass(frozen=True)
class PanelTarget:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    unit: str
    width: int
    targets: tuple[PanelTarget, ...]


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    variables: tuple[str, ...]
    panels: tuple[PanelSpec, ...]


def dashboards_from_json(doc: Sequence[Mapping[str, Any]]) -> tuple[DashboardSpec, ...]:
    """Grafana's JSON model (the slice the platform renders) as typed dashboards. Pure."""
    out = []
    for board in doc:
        panels = tuple(
            PanelSpec(
                title=_str(p.get("title")),
                unit=_str((p.get("fieldConfig") or {}).get("defaults", {}).get("unit")) or "short",
                width=_int((p.get("gridPos") or {}).get("w"), 12),
                targets=tuple(
                    PanelTarget(_str(t.get("expr")), _str(t.get("legendFormat")))
                    for t in p.get("targets") or []
                ),
            )
            for p in board.get("panels") or []
        )
        variables = tuple(
            _str(v.get("name")) for v in (board.get("templating") or {}).get("list") or []
        )
        out.append(
            DashboardSpec(_str(board.get("uid")), _str(board.get("title")), variables, panels)
        )
    return tuple(out)


def load_dashboards(path: Path = DASHBOARDS_JSON) -> tuple[DashboardSpec, ...]:
    return dashboards_from_json(json.loads(path.read_text(encoding="utf-8")))


def runnable(expr: str, variables: Sequence[str], rate: str) -> str:
    """A panel's PromQL with Grafana's variables filled in: every template variable matches all
    values (Grafana's `All`), `$__rate_interval`/`$__interval` become `rate`. Pure."""
    names = {**{f"${v}": ".+" for v in variables}, "$__rate_interval": rate, "$__interval": rate}
    for name in sorted(names, key=len, reverse=True):
        expr = expr.replace(name, names[name])
    if "$" in expr:
        raise ValueError(f"unknown template variable in: {expr}")
    return expr


def legend(template: str, series: Series) -> str:
    if not template or template == "__auto":
        return ", ".join(f"{k}={v}" for k, v in series.labels) or "value"
    out = template
    for key, value in series.labels:
        out = out.replace("{{" + key + "}}", value)
    return out


@dataclass(frozen=True)
class PanelData:
    panel: PanelSpec
    series: tuple[tuple[str, tuple[tuple[float, float], ...]], ...]  # (legend, points)
    error: str


def read_panel(
    prom: Prometheus | None,
    board: DashboardSpec,
    panel: PanelSpec,
    start: float,
    end: float,
    step: float,
    rate: str,
) -> PanelData:
    if prom is None:
        return PanelData(panel, (), "no Prometheus configured")
    drawn: list[tuple[str, tuple[tuple[float, float], ...]]] = []
    try:
        for target in panel.targets:
            for s in prom.query_range(
                runnable(target.expr, board.variables, rate), start, end, step
            ):
                drawn.append((legend(target.legend, s), s.points))
    except (PrometheusError, ValueError) as exc:
        return PanelData(panel, (), str(exc))
    return PanelData(panel, tuple(sorted(drawn)), "")


# --- the edge: one object the app holds ----------------------------------------------------------
@dataclass(frozen=True)
class Sources:
    ledger: Ledger
    prometheus: Prometheus | None
    specs: tuple[MetricSpec, ...]
    interval: float  # the judge's interval: one chart point per interval
    dashboards_path: Path = DASHBOARDS_JSON

    def records(self) -> tuple[Mapping[str, Any], ...]:
        return self.ledger.read().records

    def deliveries(
        self, records: Sequence[Mapping[str, Any]] | None = None
    ) -> tuple[Delivery, ...]:
        """Every delivery, newest first, from `records` when already read."""
        stored = self.records() if records is None else records
        return parse_deliveries(stored, {s.name: s.tolerance for s in self.specs})

    def finished_record(self, delivery_id: str) -> Finished | None:
        """The ledger's own `finished` record (the PNG chart draws from it)."""
        for view in deliveries(self.records()):
            if view.delivery_id == delivery_id:
                return view.finished
        return None
