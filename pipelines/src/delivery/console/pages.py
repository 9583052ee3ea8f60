"""Page models: pure functions from the console's typed data to what each page shows.

No I/O here: `data` reads, `app` serves, templates lay out. Every sentence a person reads about a
verdict is written here, so it is tested here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup

from delivery.console import svg
from delivery.console.data import (
    AGGREGATE,
    DashboardSpec,
    Delivery,
    DoraFigures,
    Evidence,
    Look,
    MetricSpec,
    PanelData,
    WindowSeries,
)
from delivery.dora import human_duration, plural

OUTCOMES = ("promoted", "aborted", "refused", "applied", "running")


def when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def value(v: float | None, unit: str) -> str:
    return "-" if v is None else svg.format_value(v, unit)


def effect(v: float | None, effect_unit: str) -> str:
    if v is None:
        return "-"
    if effect_unit == "pp":
        return f"{100 * v:+.2f} pp"
    return f"{100 * v:+.1f}%"


def p_text(v: float | None) -> str:
    return "-" if v is None else f"{v:.2g}"


def metric_label(name: str, unit: str) -> str:
    words = {
        "error_ratio": "5xx error ratio",
        "latency": "median latency",
        "latency_p99": "p99 latency",
    }
    return words.get(name, name.replace("_", " ") + (" (ratio)" if unit == "ratio" else ""))


def decision_words(e: Evidence) -> str:
    """The judge's decision on one row, in a sentence a person understands."""
    label = metric_label(e.metric, e.unit)
    where = "overall" if e.scope == AGGREGATE else f"for tenant {e.scope}"
    values = f"canary {value(e.canary_value, e.unit)} vs baseline {value(e.baseline_value, e.unit)}"
    tolerance = "" if e.tolerance is None else effect(e.tolerance, e.effect_unit).lstrip("+")
    p = p_text(e.p_adjusted if e.p_adjusted is not None else e.p_value)
    alpha = "-" if e.alpha is None else f"{e.alpha:.2g}"
    if e.result == "fail":
        beyond = f", beyond the tolerance of {tolerance}" if tolerance else ""
        return (
            f"Failed: {label} {where} is worse on the canary ({values}, "
            f"{effect(e.effect, e.effect_unit)}{beyond}), and the difference is significant "
            f"(p = {p} after correction, at most {alpha})."
        )
    if e.result == "insufficient":
        return (
            f"Not judged: too little data for {label} {where} "
            f"({e.canary_n:.0f} canary and {e.baseline_n:.0f} baseline requests)"
            + (f"; {e.note}." if e.note else ".")
        )
    if e.result == "missing":
        return f"No data: {label} {where} had no samples in the window."
    if e.note:
        return f"Passed: {label} {where}, {values}; {e.note}."
    significant = e.p_adjusted is not None and e.alpha is not None and e.p_adjusted <= e.alpha
    if significant:
        return (
            f"Passed: {label} {where} differs ({values}, {effect(e.effect, e.effect_unit)}) "
            f"but stays within the tolerance of {tolerance or 'the policy'}."
        )
    return (
        f"Passed: no significant difference in {label} {where} ({values}, p = {p}, "
        f"needs at most {alpha} to count)."
    )


def baking(d: Delivery) -> tuple[int, int, float] | None:
    """For a running delivery, the step baking now: (index, planned weight, since when). The
    ledger records a step when its look ends, so this is read from the plan: the next step, or
    the same one again after an inconclusive look (an extension)."""
    if not d.running:
        return None
    if not d.looks:
        index, since = 0, d.started_at or 0.0
    else:
        last = d.looks[-1]
        index = last.step if last.outcome == "inconclusive" else last.step + 1
        since = last.ended_at
    if index >= len(d.planned):
        return None
    return index, d.planned[index].weight, since


def outcome_words(d: Delivery) -> str:
    if d.running:
        now = baking(d)
        if now is None:
            return "Running: the last step has been judged; promoting or aborting."
        return f"Running: step {now[0] + 1} of {len(d.planned)} is baking at {now[1]}%."
    return {
        "promoted": f"Promoted: {d.version} is now stable.",
        "aborted": f"Aborted: the canary was removed; {d.stable_version or 'stable'} kept serving.",
        "refused": "Refused before any traffic moved.",
        "applied": "Platform change applied.",
    }.get(d.outcome, d.outcome)


# --- the list -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    id: str
    version: str
    commit: str
    cell: str
    outcome: str
    when: str
    duration: str
    trigger: str
    delta: str
    reason: str


@dataclass(frozen=True)
class ListPage:
    env: str
    envs: tuple[str, ...]
    outcome: str
    cell: str
    cells: tuple[str, ...]
    rows: tuple[Row, ...]
    total: int
    dora: DoraFigures
    cards: tuple[tuple[str, str], ...]
    charts: tuple[tuple[str, Markup], ...]  # (caption, chart)
    running: bool


def delta_text(d: Delivery) -> str:
    if d.delta is None:
        return "-"
    verdict = "allowed" if d.delta.allowed else "refused"
    text = f"{verdict}: {d.delta.kind}, {d.delta.changes} change(s), risk {d.delta.risk:g}"
    return text + (f" (override: {'; '.join(d.overrides)})" if d.overrides else "")


def short_reason(d: Delivery) -> str:
    """Why it ended, in one line: for a judge's failure, what failed and for whom."""
    failed = [look for look in d.looks if look.outcome == "fail"]
    if d.outcome == "aborted" and failed:
        look = failed[-1]
        what = [
            f"{metric_label(e.metric, e.unit)} "
            + ("overall" if e.scope == AGGREGATE else f"for {e.scope}")
            for e in look.evidence
            if e.result == "fail"
        ]
        if what:
            return f"the judge failed the canary at {look.weight}%: " + "; ".join(what)
    return d.reason if len(d.reason) <= 160 else d.reason[:157] + "..."


def dora_cards(f: DoraFigures) -> tuple[tuple[str, str], ...]:
    """DORA's figures as (label, value), rates only where the sample makes one (ADR 112)."""
    window = "an unknown window" if f.window_seconds is None else human_duration(f.window_seconds)
    if f.deploys_per_day is not None:
        frequency = f"{f.deploys_per_day:.2f} per day"
    else:
        frequency = f"{plural(f.promoted, 'promotion')} in {window}"
    share = f"{f.failed_changes} of {f.deliveries}"
    if f.rates_sufficient and f.change_fail_rate is not None:
        fail_rate = f"{f.change_fail_rate:.0%} ({share})"
    else:
        fail_rate = f"{share} failed"

    def median(seconds: float | None) -> str:
        return "-" if seconds is None else human_duration(seconds)

    return (
        ("deliveries that reached the canary", str(f.deliveries)),
        ("promoted / aborted", f"{f.promoted} / {f.aborted}"),
        ("deployment frequency", frequency),
        ("lead time (median)", median(f.lead_time_seconds)),
        ("change-fail rate", fail_rate),
        ("time to restore (median)", median(f.time_to_restore_seconds)),
    )


def list_page(
    all_deliveries: Sequence[Delivery],
    env: str,
    dora: DoraFigures,
    *,
    outcome: str = "",
    cell: str = "",
) -> ListPage:
    envs = tuple(sorted({d.env for d in all_deliveries} | ({env} if env else set())))
    in_env = [d for d in all_deliveries if d.env == env]
    shown = [
        d for d in in_env if (not outcome or d.outcome == outcome) and (not cell or d.cell == cell)
    ]
    rows = tuple(
        Row(
            id=d.id,
            version=d.version,
            commit=d.commit[:12],
            cell=d.cell,
            outcome=d.outcome,
            when=when(d.started_at),
            duration=duration(d.duration_seconds) if not d.running else "running",
            trigger=d.trigger or "not recorded",
            delta=delta_text(d),
            reason=short_reason(d),
        )
        for d in shown
    )
    points = dora.over_time
    span = (points[0].at, points[-1].at) if points else (0.0, 1.0)
    cfr_title = "Change-fail rate, rolling over the last 10 finished deliveries"
    lead_title = "Lead time (median, commit to promoted), rolling over the last 10"
    cfr = svg.line_chart(
        cfr_title,
        [
            svg.Line(
                "change-fail rate",
                tuple((p.at, p.change_fail_rate) for p in points if p.change_fail_rate is not None),
                "canary",
            )
        ],
        unit="ratio",
        x_range=span,
        y_max=1.0,
        height=160,
    )
    lead = svg.line_chart(
        lead_title,
        [
            svg.Line(
                "lead time",
                tuple(
                    (p.at, p.lead_time_seconds) for p in points if p.lead_time_seconds is not None
                ),
                "s0",
            )
        ],
        unit="s",
        x_range=span,
        height=160,
    )
    return ListPage(
        env=env,
        envs=envs,
        outcome=outcome,
        cell=cell,
        cells=tuple(sorted({d.cell for d in in_env if d.cell})),
        rows=rows,
        total=len(in_env),
        dora=dora,
        cards=dora_cards(dora),
        charts=((cfr_title, cfr), (lead_title, lead)),
        running=any(d.running for d in in_env),
    )


# --- one delivery -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    at: str
    title: str
    detail: str
    css: str


@dataclass(frozen=True)
class EvidenceLine:
    step: int
    weight: int
    canary: str
    baseline: str
    effect: str
    tolerance: str
    p_value: str
    p_adjusted: str
    alpha: str
    result: str
    words: str


@dataclass(frozen=True)
class MetricPanel:
    anchor: str
    metric: str
    scope: str
    title: str
    result: str  # "fail" if any look failed, else the last look's result
    decision: str  # the words for the last look (or the failing one)
    lines: tuple[EvidenceLine, ...]
    chart: Markup
    chart_source: str  # where the chart's numbers come from


@dataclass(frozen=True)
class DeliveryPage:
    d: Delivery
    outcome_words: str
    started: str
    ended: str
    duration: str
    delta: str
    events: tuple[Event, ...]
    weight_chart: Markup
    looks: tuple[Look, ...]
    failing: tuple[MetricPanel, ...]
    overview: tuple[MetricPanel, ...]  # shown open: the aggregates, when nothing failed
    others: tuple[MetricPanel, ...]  # folded away
    series_error: str


def timeline(d: Delivery) -> tuple[Event, ...]:
    events = [
        Event(
            when(d.started_at),
            "started",
            f"{d.version} against stable {d.stable_version or '-'}",
            "info",
        )
    ]
    if d.delta is not None:
        events.append(
            Event(
                when(d.started_at),
                "delta gate",
                delta_text(d),
                "pass" if d.delta.allowed else "fail",
            )
        )
    for c in d.checks:
        events.append(
            Event(when(d.started_at), f"check: {c.name}", c.detail, "pass" if c.passed else "fail")
        )
    for look in d.looks:
        ext = f", extension {look.extensions}" if look.extensions else ""
        events.append(
            Event(
                when(look.started_at),
                f"step {look.step + 1}: weight {look.weight}%",
                f"bake {look.bake_seconds:g} s{ext}",
                "info",
            )
        )
        score = "n/a" if look.score is None else f"{look.score:.0f}"
        detail = "; ".join(look.reasons[:2]) or "-"
        if look.metrics_error:
            detail = f"metrics unavailable: {look.metrics_error}"
        events.append(
            Event(
                when(look.ended_at), f"judge: {look.outcome} (score {score})", detail, look.outcome
            )
        )
    current = baking(d)
    if current is not None:
        index, weight, since = current
        events.append(
            Event(
                when(since),
                f"step {index + 1}: weight {weight}%",
                "baking now (planned weight; the ledger records the step when its look ends)",
                "running",
            )
        )
    if not d.running:
        events.append(Event(when(d.ended_at), d.outcome, d.reason, d.outcome))
    return tuple(events)


def _weights(d: Delivery, now: float) -> Markup:
    points: list[tuple[float, float]] = []
    if d.started_at is not None:
        points.append((d.started_at, 0.0))
    for look in d.looks:
        points.append((look.started_at, float(look.weight)))
    current = baking(d)
    if current is not None:
        points.append((current[2], float(current[1])))
    end = now if d.running else d.ended_at or (points[-1][0] if points else now)
    final = 100.0 if d.outcome == "promoted" else 0.0
    if not d.running and points:
        points.append((end, final))
    start = d.started_at or (points[0][0] if points else now)
    return svg.line_chart(
        "Canary weight over time (%)",
        [svg.Line("canary weight", tuple(points), "weight", step=True)],
        unit="percent",
        x_range=(start, max(end, start + 1)),
        y_max=100.0,
        height=140,
    )


def _panel(
    d: Delivery,
    metric: str,
    scope: str,
    rows: Sequence[tuple[Look, Evidence]],
    window: WindowSeries,
) -> MetricPanel:
    # A failure at any look stands; otherwise the last look decides (an extension that gathered
    # enough data turns an earlier "insufficient" into the step's real result).
    failed = [e for _, e in rows if e.result == "fail"]
    shown = failed[-1] if failed else rows[-1][1]
    worst = shown.result
    unit = rows[-1][1].unit
    tol = rows[-1][1].tolerance
    canary = window.values.get((metric, scope, "canary"), ())
    baseline = window.values.get((metric, scope, "baseline"), ())
    source = "Prometheus, one point per judge interval"
    if not canary and not baseline:
        # Prometheus no longer holds the window: draw the ledger's per-look values instead.
        canary = tuple(
            (lk.ended_at, e.canary_value) for lk, e in rows if e.canary_value is not None
        )
        baseline = tuple(
            (lk.ended_at, e.baseline_value) for lk, e in rows if e.baseline_value is not None
        )
        source = "the ledger's value at each judge look" + (
            f" ({window.error})" if window.error else ""
        )
    band = None
    if tol is not None and baseline:
        upper = tuple(
            (x, y + tol if rows[-1][1].effect_unit == "pp" else y * (1 + tol)) for x, y in baseline
        )
        band = svg.Band(
            f"tolerance: baseline + {effect(tol, rows[-1][1].effect_unit).lstrip('+')}",
            baseline,
            upper,
        )
    markers = [
        svg.Marker(
            lk.ended_at,
            f"{lk.weight}% {'FAIL' if e.result == 'fail' else e.result}",
            "fail" if e.result == "fail" else "step",
        )
        for lk, e in rows
    ]
    where = "all tenants" if scope == AGGREGATE else f"tenant {scope}"
    title = f"{metric_label(metric, unit)} — {where}"
    chart = svg.line_chart(
        f"{title}: canary vs baseline",
        [svg.Line("baseline", baseline, "baseline"), svg.Line("canary", canary, "canary")],
        unit=unit,
        x_range=(window.start, window.end),
        band=band,
        markers=markers,
        width=960,
        height=240,
    )
    lines = tuple(
        EvidenceLine(
            step=lk.step + 1,
            weight=lk.weight,
            canary=f"{value(e.canary_value, e.unit)} (n={e.canary_n:.0f})",
            baseline=f"{value(e.baseline_value, e.unit)} (n={e.baseline_n:.0f})",
            effect=effect(e.effect, e.effect_unit),
            tolerance="-"
            if e.tolerance is None
            else effect(e.tolerance, e.effect_unit).lstrip("+"),
            p_value=p_text(e.p_value),
            p_adjusted=p_text(e.p_adjusted),
            alpha="-" if e.alpha is None else f"{e.alpha:.2g}",
            result=e.result,
            words=decision_words(e),
        )
        for lk, e in rows
    )
    return MetricPanel(
        anchor=f"{metric}--{scope}",
        metric=metric,
        scope=scope,
        title=title,
        result=worst,
        decision=decision_words(shown),
        lines=lines,
        chart=chart,
        chart_source=source,
    )


def delivery_page(d: Delivery, window: WindowSeries, now: float) -> DeliveryPage:
    by_key: dict[tuple[str, str], list[tuple[Look, Evidence]]] = {}
    for look in d.looks:
        for e in look.evidence:
            by_key.setdefault((e.metric, e.scope), []).append((look, e))
    panels = [_panel(d, metric, scope, rows, window) for (metric, scope), rows in by_key.items()]
    # Failing panels first, the failing tenant before its aggregate; then passing in order.
    failing = sorted(
        (p for p in panels if p.result == "fail"),
        key=lambda p: (p.scope == AGGREGATE, p.metric, p.scope),
    )
    passing = sorted(
        (p for p in panels if p.result != "fail"),
        key=lambda p: (p.metric, p.scope != AGGREGATE, p.scope),
    )
    return DeliveryPage(
        d=d,
        outcome_words=outcome_words(d),
        started=when(d.started_at),
        ended=when(d.ended_at) if not d.running else "-",
        duration=duration(d.duration_seconds) if not d.running else "running",
        delta=delta_text(d),
        events=timeline(d),
        weight_chart=_weights(d, now),
        looks=d.looks,
        failing=tuple(failing),
        overview=tuple(p for p in passing if not failing and p.scope == AGGREGATE),
        others=tuple(p for p in passing if failing or p.scope != AGGREGATE),
        series_error=window.error,
    )


def markdown_summary(d: Delivery, link: str = "") -> str:
    """The job-summary markdown, from the same data as the page."""
    lines = [
        f"## Delivery of `{d.version}` to `{d.env}`: **{d.outcome.upper()}**",
        "",
        d.reason or outcome_words(d),
        "",
        f"Delta gate: {delta_text(d)}",
        "",
    ]
    for look in d.looks:
        score = "n/a" if look.score is None else f"{look.score:.0f}"
        lines += [
            f"### Step {look.step + 1}: {look.weight}% — {look.outcome} (score {score})",
            "",
            "| metric | scope | canary | baseline | effect | p adj | result |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in look.evidence:
            if e.scope != AGGREGATE and e.result != "fail":
                continue
            lines.append(
                f"| {e.metric} | {e.scope} | {value(e.canary_value, e.unit)} | "
                f"{value(e.baseline_value, e.unit)} | {effect(e.effect, e.effect_unit)} | "
                f"{p_text(e.p_adjusted)} | {e.result} |"
            )
        lines.append("")
    if link:
        lines.append(f"[Open in the delivery console]({link})")
    return "\n".join(lines) + "\n"


# --- dashboards -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PanelView:
    title: str
    wide: bool
    chart: Markup
    legend: tuple[tuple[str, str], ...]  # (css, name)
    error: str
    empty: bool


def dashboard_panels(data: Sequence[PanelData], start: float, end: float) -> tuple[PanelView, ...]:
    views = []
    for item in data:
        lines = [
            svg.Line(name, points, f"s{i % 8}") for i, (name, points) in enumerate(item.series[:16])
        ]
        views.append(
            PanelView(
                title=item.panel.title,
                wide=item.panel.width > 12,
                chart=svg.line_chart(
                    item.panel.title, lines, unit=item.panel.unit, x_range=(start, end)
                ),
                legend=tuple((ln.css, ln.name) for ln in lines),
                error=item.error,
                empty=not any(ln.points for ln in lines),
            )
        )
    return tuple(views)


def find_dashboard(boards: Sequence[DashboardSpec], uid: str) -> DashboardSpec | None:
    return next((b for b in boards if b.uid == uid), None)


def specs_or_inferred(specs: Sequence[MetricSpec], d: Delivery) -> tuple[MetricSpec, ...]:
    """The policy's metrics, or (without a policy) what the evidence's units imply."""
    if specs:
        return tuple(specs)
    seen: dict[str, MetricSpec] = {}
    for look in d.looks:
        for e in look.evidence:
            if e.metric in seen:
                continue
            if e.unit == "ratio":
                seen[e.metric] = MetricSpec(e.metric, "error_ratio", 0.5, 0.0, True)
            elif e.unit == "seconds":
                q = 0.99 if "99" in e.metric else 0.5
                seen[e.metric] = MetricSpec(e.metric, "latency", q, 0.0, True)
    return tuple(seen.values())
