"""The peers' judges, on the same simulated counts: fixed thresholds on the canary alone.

- Flagger-style: every `check_seconds`, over the trailing check window, the canary's success
  rate must be >= 99% and its p99 <= 500 ms (Flagger's built-in request-success-rate and
  request-duration checks with the values from its docs), or p99 <= 2.5 s (a bound that suits
  the measured service). A check without data fails, as in Flagger. The canary is rolled back
  once `threshold` checks have failed.
- Argo-style: every `check_seconds`, the trailing success rate must be >= 95% (the Argo
  Rollouts AnalysisTemplate example); failureLimit 0 (Argo's default) means the first failed
  measurement fails the rollout. A measurement without data is an error, not a failure.

Both see only the step window (they have no notion of "inconclusive", hence no extension).
Vectorised over runs; they return the time of the failing check, or +inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from delivery.judge_stats import histogram_quantile

from judge_eval.traffic import FloatArray, TrackCounts, TrafficModel


@dataclass(frozen=True)
class ThresholdJudge:
    name: str
    min_success: float
    max_p99_seconds: float | None
    threshold: int  # failed checks before rollback
    no_data_fails: bool
    check_seconds: float = 60.0


FLAGGER = ThresholdJudge(
    "Flagger-style (>=99%, p99<=500ms, 1 failed check)",
    min_success=0.99,
    max_p99_seconds=0.5,
    threshold=1,
    no_data_fails=True,
)
FLAGGER_DOCS = ThresholdJudge(
    "Flagger-style (threshold 5, as in its docs)",
    min_success=0.99,
    max_p99_seconds=0.5,
    threshold=5,
    no_data_fails=True,
)
# The measured service's p99 is about 1.3 s, so a 500 ms bound fails every canary; this is the
# bound a Flagger user would pick for it: the histogram bucket edge above the measured p99.
FLAGGER_SERVICE = ThresholdJudge(
    "Flagger-style (>=99%, p99<=2.5s, 1 failed check)",
    min_success=0.99,
    max_p99_seconds=2.5,
    threshold=1,
    no_data_fails=True,
)
ARGO = ThresholdJudge(
    "Argo-style (success >= 95%)",
    min_success=0.95,
    max_p99_seconds=None,
    threshold=1,
    no_data_fails=False,
)


def threshold_fail_times(
    judge: ThresholdJudge, model: TrafficModel, canary: TrackCounts
) -> FloatArray:
    per_check = max(1, round(judge.check_seconds / model.interval_seconds))
    checks = model.window_intervals // per_check
    runs = canary.requests.shape[0]
    failed_checks = np.zeros(runs, dtype=np.int64)
    fail_time = np.full(runs, np.inf)
    bounds = np.asarray(model.bounds)
    for c in range(checks):
        window = slice(c * per_check, (c + 1) * per_check)
        requests = canary.requests[:, :, window].sum(axis=(1, 2)).astype(np.float64)
        errors = canary.errors[:, :, window].sum(axis=(1, 2)).astype(np.float64)
        no_data = requests <= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            success = np.where(no_data, np.nan, 1.0 - errors / requests)
        bad = np.where(no_data, judge.no_data_fails, success < judge.min_success)
        if judge.max_p99_seconds is not None:
            buckets = canary.latency[:, :, window, :].sum(axis=(1, 2)).astype(np.float64)
            p99 = histogram_quantile(buckets, bounds, 0.99)
            bad |= ~no_data & (p99 > judge.max_p99_seconds)
        failed_checks += bad
        newly = (failed_checks >= judge.threshold) & ~np.isfinite(fail_time)
        fail_time[newly] = (c + 1) * per_check * model.interval_seconds
    return fail_time
