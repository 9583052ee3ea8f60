"""Simulated counts -> the StepObservation the pipeline's metrics source would build.

This is the seam that makes the harness judge with the same code as the pipeline: every
judge call in the harness receives the same dataclasses Prometheus data is turned into.
"""

from __future__ import annotations

from dataclasses import dataclass

from delivery.observation import Interval, StepObservation, TrackSeries

from judge_eval.traffic import TrackCounts, TrafficModel


@dataclass(frozen=True)
class RunIntervals:
    """One run's intervals per tenant and track, built once and sliced per look."""

    canary: dict[str, tuple[Interval, ...]]
    baseline: dict[str, tuple[Interval, ...]]


def run_intervals(
    model: TrafficModel, canary: TrackCounts, baseline: TrackCounts, run: int
) -> RunIntervals:
    names = model.tenant_names()
    return RunIntervals(
        canary=_track(names, canary, run),
        baseline=_track(names, baseline, run),
    )


def observation(model: TrafficModel, intervals: RunIntervals, k: int) -> StepObservation:
    """The observation after the first k intervals of the step."""
    return StepObservation(
        bounds=model.bounds,
        interval_seconds=model.interval_seconds,
        canary=TrackSeries({t: ivs[:k] for t, ivs in intervals.canary.items()}),
        baseline=TrackSeries({t: ivs[:k] for t, ivs in intervals.baseline.items()}),
    )


def _track(names: list[str], counts: TrackCounts, run: int) -> dict[str, tuple[Interval, ...]]:
    # float64 first: tolist() then yields Python floats, the observation's number type.
    requests = counts.requests[run].astype(float).tolist()
    errors = counts.errors[run].astype(float).tolist()
    latency = counts.latency[run].astype(float).tolist()
    return {
        name: tuple(
            Interval(n, e, tuple(buckets))
            for n, e, buckets in zip(requests[t], errors[t], latency[t], strict=True)
        )
        for t, name in enumerate(names)
    }
