"""What the judge sees of one canary step: per-tenant, per-interval counts for two tracks.

The metrics source fills this from the Prometheus HTTP API (Thanos Query speaks the same API);
the judge and the evaluation harness consume it. Counts are floats because Prometheus'
`increase()` extrapolates.
"""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """One slice of a step window, for one tenant on one track."""

    requests: float
    errors: float  # 5xx responses
    # Non-cumulative request counts per latency bucket, aligned with StepObservation.bounds,
    # plus a final +Inf bucket (so len == len(bounds) + 1).
    latency_counts: tuple[float, ...]


@dataclass(frozen=True)
class TrackSeries:
    """All tenants of one track (canary or baseline) over the step window."""

    tenants: Mapping[str, tuple[Interval, ...]]


@dataclass(frozen=True)
class StepObservation:
    bounds: tuple[float, ...]  # latency bucket upper bounds in seconds, ascending, +Inf excluded
    interval_seconds: float
    canary: TrackSeries
    baseline: TrackSeries
