"""The judge's output: an outcome with its score, its reasons and every row of evidence.

Plain data plus two renderings: `to_json()` for the ledger and `render_table()` for terminals
(plain text) and job summaries (markdown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["pass", "fail", "inconclusive"]
# pass: tested, no harm, enough data; fail: harm (or data the canary lacks); insufficient: too
# little data to test, or to see the smallest harmful effect; missing: the baseline reports the
# metric and the canary does not; untested: no data on either track.
RowResult = Literal["pass", "fail", "insufficient", "missing", "untested"]
MetricStatus = Literal["pass", "fail", "insufficient", "missing", "untested"]

# What a reader sees in the tables: what happened, not only the code.
WORDS: dict[str, str] = {
    "pass": "passed",
    "fail": "failed",
    "insufficient": "too little data",
    "missing": "missing on the canary",
    "untested": "not tested",
}

AGGREGATE = "aggregate"


@dataclass(frozen=True)
class EvidenceRow:
    """One metric on one scope (the aggregate or a tenant id), canary against baseline."""

    metric: str
    scope: str
    canary_n: float
    canary_value: float | None
    baseline_n: float
    baseline_value: float | None
    effect: float | None  # absolute difference for ratios, relative change otherwise
    interval: tuple[float, float] | None  # confidence interval of the effect
    p_value: float | None
    p_adjusted: float | None  # after the multiple-comparison correction within the metric
    alpha: float  # what p_adjusted was compared with
    result: RowResult
    unit: str  # "ratio" | "seconds" | "req/interval" | "requests"
    effect_unit: str  # "pp" | "relative"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "scope": self.scope,
            "canary": {"n": _num(self.canary_n), "value": _num(self.canary_value)},
            "baseline": {"n": _num(self.baseline_n), "value": _num(self.baseline_value)},
            "effect": _num(self.effect),
            "effect_unit": self.effect_unit,
            "interval": None if self.interval is None else [_num(x) for x in self.interval],
            "p_value": _num(self.p_value),
            "p_adjusted": _num(self.p_adjusted),
            "alpha": _num(self.alpha),
            "result": self.result,
            "unit": self.unit,
            "note": self.note,
        }


@dataclass(frozen=True)
class MetricResult:
    name: str
    status: MetricStatus
    critical: bool
    weight: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "critical": self.critical,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    score: float | None  # Kayenta-style, 0-100; None when no metric could be scored
    reasons: tuple[str, ...]
    evidence: tuple[EvidenceRow, ...]
    metrics: tuple[MetricResult, ...]
    interim: bool
    alpha: float  # the false-fail budget this look spent

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "score": _num(self.score),
            "interim": self.interim,
            "alpha": _num(self.alpha),
            "reasons": list(self.reasons),
            "metrics": [m.to_json() for m in self.metrics],
            "evidence": [row.to_json() for row in self.evidence],
        }

    def failing(self) -> tuple[EvidenceRow, ...]:
        return tuple(row for row in self.evidence if row.result == "fail")

    def render_table(self, *, markdown: bool = False, all_tenants: bool = False) -> str:
        """The evidence as a table. Tenant rows are shown when they fail or are asked for;
        the rest are summarised in one line, so 50 tenants stay readable."""
        header = [
            "metric",
            "scope",
            "canary n",
            "canary",
            "baseline n",
            "baseline",
            "effect",
            "interval",
            "p",
            "p adj",
            "alpha",
            "result",
        ]
        shown = [
            row
            for row in self.evidence
            if all_tenants or row.scope == AGGREGATE or row.result == "fail"
        ]
        hidden = len(self.evidence) - len(shown)
        body = [_cells(row) for row in shown]
        score = "n/a" if self.score is None else f"{self.score:.1f}"
        look = ", interim" if self.interim else ""
        title = f"Verdict: {self.outcome.upper()} (score {score}{look})"
        tested = ", ".join(f"{m.name} {WORDS.get(m.status, m.status)}" for m in self.metrics)
        lines: list[str] = []
        if markdown:
            lines.append(f"**{title}**")
            lines.append("")
            lines.append(f"Metrics: {tested}")
            lines.append("")
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines.extend("| " + " | ".join(cells) + " |" for cells in body)
            lines.append("")
            lines.extend(f"- {reason}" for reason in self.reasons)
        else:
            widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
            lines.append(title)
            lines.append(f"metrics: {tested}")
            lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
            lines.append("  ".join("-" * w for w in widths))
            lines.extend(
                "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body
            )
            lines.extend(f"* {reason}" for reason in self.reasons)
        if hidden:
            lines.append(f"({hidden} tenant rows that passed or had too little data not shown)")
        return "\n".join(lines) + "\n"


def _cells(row: EvidenceRow) -> list[str]:
    return [
        row.metric,
        row.scope,
        _count(row.canary_n),
        _value(row.canary_value, row.unit),
        _count(row.baseline_n),
        _value(row.baseline_value, row.unit),
        _effect(row.effect, row.effect_unit),
        _interval(row.interval, row.effect_unit),
        _p(row.p_value),
        _p(row.p_adjusted),
        f"{row.alpha:.2g}",
        WORDS.get(row.result, row.result) + (f" ({row.note})" if row.note else ""),
    ]


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _count(value: float) -> str:
    return f"{value:.0f}"


def _value(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "ratio":
        return f"{100.0 * value:.2f}%"
    if unit == "seconds":
        return f"{1000.0 * value:.1f}ms"
    return f"{value:.1f}"


def format_effect(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "pp":
        return f"{100.0 * value:+.2f}pp"
    return f"{100.0 * value:+.1f}%"


_effect = format_effect


def _interval(interval: tuple[float, float] | None, unit: str) -> str:
    if interval is None:
        return "-"
    return f"[{format_effect(interval[0], unit)}, {format_effect(interval[1], unit)}]"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2g}"
