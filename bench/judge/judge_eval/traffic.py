"""Request-level traffic for canary and baseline, vectorised over runs.

A step window is cut into intervals (the pipeline's judge interval). Per run, tenant and
interval, each track receives Poisson(rate x weight x share x interval) requests; each request
fails (5xx) with a Bernoulli probability and has a lognormal latency, counted into the service's
histogram buckets. The canary and the baseline get the same weight, as in the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from image_contracts.metrics import LATENCY_BUCKETS
from scipy import stats

# The image service's histogram buckets, +Inf excluded: the contract's one definition.
SERVICE_BOUNDS: tuple[float, ...] = LATENCY_BUCKETS

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Z99 = float(stats.norm.ppf(0.99))


@dataclass(frozen=True)
class LatencyModel:
    """Lognormal request latency: median exp(mu) seconds, log-sd sigma."""

    median: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.median > 0 and self.sigma > 0):
            raise ValueError(f"latency model needs median > 0 and sigma > 0, got {self}")

    def quantile(self, q: float) -> float:
        return float(self.median * math.exp(self.sigma * stats.norm.ppf(q)))

    def slower(self, p99_factor: float, *, tail_only: bool) -> LatencyModel:
        """The model whose p99 is p99_factor times this one's: by scaling every request
        (tail_only=False), or by widening the tail with the median fixed (tail_only=True)."""
        if tail_only:
            return LatencyModel(self.median, self.sigma + math.log(p99_factor) / Z99)
        return LatencyModel(self.median * p99_factor, self.sigma)

    def bucket_probabilities(self, bounds: tuple[float, ...]) -> FloatArray:
        edges = np.log(np.asarray(bounds, dtype=np.float64) / self.median) / self.sigma
        cdf = stats.norm.cdf(edges)
        return np.asarray(np.diff(np.concatenate([[0.0], cdf, [1.0]])), dtype=np.float64)


@dataclass(frozen=True)
class TrafficModel:
    rate: float = 100.0  # user requests per second through the gateway
    weight: float = 0.10  # canary weight; the baseline gets the same
    window_seconds: float = 300.0  # the step's bake
    extension_seconds: float = 120.0  # extra bake allowed when the verdict is inconclusive
    interval_seconds: float = 15.0  # the judge's interval (Prometheus query step)
    tenants: int = 20
    zipf_exponent: float = 1.0
    error_ratio: float = 0.001  # baseline 5xx ratio: a 99.9% service
    # Fitted to the image service on this machine (docs/judge.md, bench/judge/fit_latency.py):
    # new renditions of a 1600x1067 JPEG at widths 100-1600, JPEG and WebP, 4 req/s.
    latency: LatencyModel = LatencyModel(median=0.1007, sigma=1.094)
    bounds: tuple[float, ...] = SERVICE_BOUNDS

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 100_000:
            raise ValueError(f"rate must be in (0, 100000] req/s, got {self.rate}")
        if not 0 < self.weight <= 0.5:
            raise ValueError(f"weight must be in (0, 0.5], got {self.weight}")
        if self.window_seconds < self.interval_seconds or self.interval_seconds <= 0:
            raise ValueError("window_seconds must be >= interval_seconds > 0")
        if self.extension_seconds < 0:
            raise ValueError("extension_seconds must be >= 0")
        if not 1 <= self.tenants <= 1000:
            raise ValueError(f"tenants must be in [1, 1000], got {self.tenants}")
        if not 0 <= self.error_ratio < 1:
            raise ValueError(f"error_ratio must be in [0, 1), got {self.error_ratio}")

    @property
    def window_intervals(self) -> int:
        return round(self.window_seconds / self.interval_seconds)

    @property
    def total_intervals(self) -> int:
        return round((self.window_seconds + self.extension_seconds) / self.interval_seconds)

    def tenant_shares(self) -> FloatArray:
        ranks = np.arange(1, self.tenants + 1, dtype=np.float64)
        weights = ranks ** (-self.zipf_exponent)
        return np.asarray(weights / weights.sum())

    def tenant_names(self) -> list[str]:
        return [f"tenant-{i + 1:02d}" for i in range(self.tenants)]


@dataclass(frozen=True)
class TrackCounts:
    """One track over all runs: requests and errors (runs x tenants x intervals) and latency
    bucket counts (runs x tenants x intervals x buckets, the last bucket +Inf)."""

    requests: IntArray
    errors: IntArray
    latency: IntArray


@dataclass(frozen=True)
class TrackEffect:
    """Per run and tenant: the 5xx probability and the latency model index into `models`."""

    error_ratio: FloatArray  # runs x tenants
    latency_model: IntArray  # runs x tenants
    models: tuple[LatencyModel, ...]


def generate_track(
    model: TrafficModel,
    shares: FloatArray,
    effect: TrackEffect,
    rng: np.random.Generator,
) -> TrackCounts:
    runs = effect.error_ratio.shape[0]
    k = model.total_intervals
    lam = model.rate * model.weight * model.interval_seconds * shares  # per tenant per interval
    requests = rng.poisson(np.broadcast_to(lam[None, :, None], (runs, lam.size, k)))
    errors = rng.binomial(requests, effect.error_ratio[:, :, None])
    table = np.stack([m.bucket_probabilities(model.bounds) for m in effect.models])
    pvals = table[effect.latency_model]  # runs x tenants x buckets
    latency = rng.multinomial(requests, pvals[:, :, None, :])
    return TrackCounts(
        requests=requests.astype(np.int64),
        errors=errors.astype(np.int64),
        latency=latency.astype(np.int64),
    )
