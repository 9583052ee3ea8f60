"""Between waves: are the cells that promoted the new version worse than the cells still on the
old one, over all of their traffic? A natural experiment, judged by difference-in-differences.

Cells differ (tenant mix, traffic, their own error rates), so comparing the two groups' ratios
directly would blame the version for the mix. Each cell is compared with itself instead: its
bad-event ratio after the wave promoted (the bake window) against a window of the same length
before the rollout started. The version's effect is how much more the ratio rose in the new
cells than in the old ones; a shock that hits every cell (a traffic surge, a dependency outage)
cancels out.

Test (ADR 133), per metric (5xx, requests slower than the SLO bucket, ...):
- per cell, d = log ratio(after) - log ratio(before), with half an event and half a request
  added on each side (finite at zero errors), and its delta-method variance 1/e - 1/n summed
  over both windows;
- cells vary more than counting noise says: a DerSimonian-Laird between-cell variance tau^2,
  pooled within the two groups, is added to every cell's variance (random effects);
- effect = weighted mean d of the new cells - weighted mean d of the old cells; one-sided z test
  that it is > 0. Holm across metrics (`judge_stats.adjust_p_values`, read-only use of the
  judge's statistics).
- "worse" needs both: adjusted p <= alpha, and the relative increase exp(effect) - 1 above the
  metric's tolerance (significance and effect size, as the canary judge).

Budget: `alpha` is one check's false-stop probability; `check_alpha(budget, plan)` spreads a
rollout's budget over its between-wave checks (Bonferroni across checks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from delivery.cells.schema import CellsError, WavePlan
from delivery.judge_policy import JudgePolicy
from delivery.judge_stats import adjust_p_values


@dataclass(frozen=True)
class CellCounts:
    """One cell's counts of one metric: requests and bad events, before and after."""

    cell: str
    requests_before: float
    bad_before: float
    requests_after: float
    bad_after: float


@dataclass(frozen=True)
class MetricResult:
    metric: str
    effect: float  # relative: exp(DiD) - 1
    low: float  # one-sided lower confidence bound of the relative effect, at 1 - alpha
    p: float
    p_adjusted: float
    tolerance: float
    new_cells: int
    old_cells: int
    tau2: float
    worse: bool


@dataclass(frozen=True)
class ExperimentVerdict:
    after_wave: int
    alpha: float
    metrics: tuple[MetricResult, ...]
    insufficient: tuple[str, ...]  # metrics without a usable cell on each side

    @property
    def worse(self) -> bool:
        return any(m.worse for m in self.metrics)

    @property
    def summary(self) -> str:
        parts = [
            f"{m.metric} {m.effect:+.1%} (p_adj={m.p_adjusted:.2g}, {m.new_cells} new vs "
            f"{m.old_cells} old cells){' WORSE' if m.worse else ''}"
            for m in self.metrics
        ]
        parts += [f"{name}: insufficient data" for name in self.insufficient]
        return "; ".join(parts) or "no metrics"


def cell_judge_policy(judge: Mapping[str, Any], cells: int) -> dict[str, Any]:
    """ADR 134: the environment's `judge:` policy for one cell's canary in a rollout over
    `cells` cells; the step's false-fail budget is split over the cells (Bonferroni)."""
    if cells < 1:
        raise CellsError(f"a rollout needs at least one cell, got {cells}")
    confidence = JudgePolicy.from_mapping(judge).confidence
    return {**judge, "confidence": 1.0 - (1.0 - confidence) / cells}


def check_alpha(budget: float, plan: WavePlan) -> float:
    """One between-waves check's alpha: the rollout's false-stop budget over its checks."""
    if not 0 < budget < 1:
        raise CellsError(f"experiment budget must be in (0, 1), got {budget}")
    return budget / max(1, len(plan.waves) - 1)


def _arrays(rows: Sequence[CellCounts], where: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.array(
        [[r.requests_before, r.bad_before, r.requests_after, r.bad_after] for r in rows],
        dtype=np.float64,
    ).reshape(-1, 4)
    if not np.isfinite(a).all() or (a < 0).any():
        raise CellsError(f"{where}: counts must be finite and >= 0")
    if (a[:, 1] > a[:, 0]).any() or (a[:, 3] > a[:, 2]).any():
        raise CellsError(f"{where}: more bad events than requests")
    usable = (a[:, 0] > 0) & (a[:, 2] > 0)
    n0, e0, n1, e1 = (a[usable, i] + 0.5 for i in range(4))
    d = np.log(e1 / n1) - np.log(e0 / n0)
    v = np.maximum(1 / e1 - 1 / n1 + 1 / e0 - 1 / n0, 1e-9)  # all-bad cells: no zero variance
    return d, v


def _pooled(d: np.ndarray, v: np.ndarray, tau2: float) -> tuple[float, float]:
    w = 1.0 / (v + tau2)
    return float((w * d).sum() / w.sum()), float(1.0 / w.sum())


def _tau2(groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """DerSimonian-Laird between-cell variance, pooled within groups (each group its own mean)."""
    q = c = 0.0
    df = -len(groups)
    for d, v in groups:
        w = 1.0 / v
        mean = (w * d).sum() / w.sum()
        q += float((w * (d - mean) ** 2).sum())
        c += float(w.sum() - (w**2).sum() / w.sum())
        df += d.size
    if df <= 0 or c <= 0:
        return 0.0
    return max(0.0, (q - df) / c)


def judge_experiment(
    after_wave: int,
    new: Mapping[str, Sequence[CellCounts]],
    old: Mapping[str, Sequence[CellCounts]],
    *,
    alpha: float,
    tolerance: Mapping[str, float] | None = None,
) -> ExperimentVerdict:
    """Metric name -> per-cell counts for the cells on the new version (`new`) and on the old
    one (`old`). Cells without requests in a window are left out; a metric without a usable
    cell on each side is reported as insufficient and never says worse."""
    if not 0 < alpha < 1:
        raise CellsError(f"experiment alpha must be in (0, 1), got {alpha}")
    if set(new) != set(old):
        raise CellsError(f"experiment: metrics differ: {sorted(new)} vs {sorted(old)}")
    tol = dict(tolerance or {})
    unknown_tol = sorted(set(tol) - set(new))
    if unknown_tol:
        raise CellsError(f"experiment: tolerance for unknown metric(s) {unknown_tol}")
    for name in new:
        overlap = {r.cell for r in new[name]} & {r.cell for r in old[name]}
        if overlap:
            raise CellsError(f"experiment {name}: cell(s) {sorted(overlap)} on both sides")
    partial: list[tuple[str, float, float, int, int, float]] = []
    insufficient: list[str] = []
    for name in sorted(new):
        dn, vn = _arrays(new[name], f"experiment {name} (new)")
        do, vo = _arrays(old[name], f"experiment {name} (old)")
        if dn.size == 0 or do.size == 0:
            insufficient.append(name)
            continue
        tau2 = _tau2([(dn, vn), (do, vo)])
        mn, varn = _pooled(dn, vn, tau2)
        mo, varo = _pooled(do, vo, tau2)
        partial.append((name, mn - mo, math.sqrt(varn + varo), dn.size, do.size, tau2))
    p = np.array([1.0 - NormalDist().cdf(eff / se) for _, eff, se, *_ in partial])
    p_adj = adjust_p_values(p, "holm") if p.size else p
    z = NormalDist().inv_cdf(1 - alpha)
    results = []
    for (name, eff, se, n_new, n_old, tau2), pi, pa in zip(partial, p, p_adj, strict=True):
        rel = math.expm1(eff)
        t = tol.get(name, 0.0)
        results.append(
            MetricResult(
                metric=name,
                effect=rel,
                low=math.expm1(eff - z * se),
                p=float(pi),
                p_adjusted=float(pa),
                tolerance=t,
                new_cells=n_new,
                old_cells=n_old,
                tau2=tau2,
                worse=bool(pa <= alpha and rel > t),
            )
        )
    return ExperimentVerdict(after_wave, alpha, tuple(results), tuple(insufficient))
