"""Realistic traffic for whole deliveries (issue 12), vectorised over runs.

One step of one delivery is a block of intervals for two tracks (canary, baseline) at the
step's weight. On top of the reference model (Poisson arrivals, Zipf tenants, lognormal latency
fitted to the service, counted into the service's buckets) a `Noise` adds what real traffic has:

- overdispersed errors: each track's 5xx ratio in each interval is the base ratio times a gamma
  variable of mean 1 and coefficient of variation `error_cv` (a bad instance, a retry storm);
- bursty errors: with probability `burst_rate` per track and interval, a burst starts and the
  5xx ratio jumps to `burst_ratio` for `burst_length` intervals (a dependency hiccup seen by
  one track's pods; longer, an error storm);
- autocorrelated latency: the log latency drifts as an AR(1) process between intervals, shared
  by both tracks (load, dependencies), plus a smaller AR(1) drift of each track's own;
- noisy neighbours: with probability `neighbour_rate` per track and interval an episode starts
  and slows that track by `neighbour_factor` for `neighbour_length` intervals;
- a diurnal rate: the rate follows a daily sine of amplitude `diurnal` with a random phase;
- tenant skew: the Zipf exponent of the tenants' shares.

Canary and baseline draw their noise independently: an A/A run is two healthy tracks that
differ only by chance, which is the null the judge must hold its budget under.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from judge_eval.traffic import SERVICE_BOUNDS, FloatArray, IntArray, LatencyModel

DAY = 86_400.0
FITTED = LatencyModel(median=0.1007, sigma=1.094)  # as TrafficModel (bench/judge/fit_latency.py)


@dataclass(frozen=True)
class Noise:
    name: str
    error_cv: float = 0.0
    burst_rate: float = 0.0
    burst_ratio: float = 0.10
    burst_length: int = 1
    latency_sd: float = 0.0  # stationary sd of the shared AR(1) log-latency drift
    latency_own_sd: float = 0.0  # ... and of each track's own drift
    latency_rho: float = 0.8
    neighbour_rate: float = 0.0
    neighbour_length: int = 4
    neighbour_factor: float = 1.5
    diurnal: float = 0.0
    zipf: float = 1.0


@dataclass(frozen=True)
class Effect:
    """What the canary does differently; tenant_rank limits it to one tenant (1 = busiest)."""

    name: str
    error_delta: float = 0.0
    latency_factor: float = 1.0
    tenant_rank: int | None = None


HEALTHY = Effect("A/A")


@dataclass(frozen=True)
class StepTraffic:
    """One step for all runs: per track (0 canary, 1 baseline) requests and errors
    (runs x tracks x tenants x intervals) and latency buckets (... x buckets)."""

    requests: IntArray
    errors: IntArray
    latency: IntArray


@dataclass(frozen=True)
class World:
    rate: float  # user requests per second through the gateway
    noise: Noise
    tenants: int = 20
    error_ratio: float = 0.001
    latency: LatencyModel = FITTED
    bounds: tuple[float, ...] = SERVICE_BOUNDS

    def shares(self) -> FloatArray:
        ranks = np.arange(1, self.tenants + 1, dtype=np.float64)
        weights = ranks ** (-self.noise.zipf)
        return np.asarray(weights / weights.sum())

    def tenant_names(self) -> list[str]:
        return [f"tenant-{i + 1:02d}" for i in range(self.tenants)]


def generate_step(
    world: World,
    effect: Effect,
    weight: float,
    intervals: int,
    interval_seconds: float,
    runs: int,
    rng: np.random.Generator,
) -> StepTraffic:
    noise = world.noise
    shares = world.shares()
    tenants = shares.size
    shape = (runs, 2, tenants, intervals)
    # Rate: a daily cycle with a random phase per run, shared by both tracks.
    phase = rng.uniform(0.0, 2.0 * math.pi, size=(runs, 1, 1, 1))
    t = np.arange(intervals, dtype=np.float64) * interval_seconds
    cycle = 1.0 + noise.diurnal * np.sin(phase + 2.0 * math.pi * t / DAY)
    lam = world.rate * weight * interval_seconds * shares[None, None, :, None] * cycle
    requests = rng.poisson(np.broadcast_to(lam, shape))

    affected = np.ones(tenants, dtype=bool)
    if effect.tenant_rank is not None:
        affected = np.arange(tenants) == effect.tenant_rank - 1
    # Errors: per track and interval, overdispersion and bursts; the canary's effect on top.
    ratio = np.full((runs, 2, 1, intervals), world.error_ratio)
    if noise.error_cv > 0:
        k = 1.0 / noise.error_cv**2
        ratio = ratio * rng.gamma(k, 1.0 / k, size=ratio.shape)
    if noise.burst_rate > 0:
        burst = _episodes(rng.random(ratio.shape) < noise.burst_rate, noise.burst_length)
        ratio = np.where(burst, np.maximum(ratio, noise.burst_ratio), ratio)
    ratio = np.broadcast_to(ratio, shape).copy()
    ratio[:, 0][:, affected] += effect.error_delta
    errors = rng.binomial(requests, np.clip(ratio, 0.0, 1.0))

    # Latency: a log shift per track and interval (AR(1) drift, noisy-neighbour episodes),
    # the canary's effect per tenant on top.
    shift = np.zeros((runs, 2, 1, intervals))
    for sd, tracks in ((noise.latency_sd, 1), (noise.latency_own_sd, 2)):
        if sd > 0:
            shift += _ar1((runs, tracks, 1, intervals), sd, noise.latency_rho, rng)
    if noise.neighbour_rate > 0:
        episode = _episodes(rng.random(shift.shape) < noise.neighbour_rate, noise.neighbour_length)
        shift += np.where(episode, math.log(noise.neighbour_factor), 0.0)
    shift = np.broadcast_to(shift, shape).copy()
    if effect.latency_factor != 1.0:
        shift[:, 0][:, affected] += math.log(effect.latency_factor)
    edges = np.log(np.asarray(world.bounds) / world.latency.median)
    z = (edges[None, None, None, None, :] - shift[..., None]) / world.latency.sigma
    cdf = special.ndtr(z)
    zeros = np.zeros((*shape, 1))
    pvals = np.diff(np.concatenate([zeros, cdf, zeros + 1.0], axis=-1), axis=-1)
    latency = rng.multinomial(requests, pvals)
    return StepTraffic(
        requests=requests.astype(np.int64),
        errors=errors.astype(np.int64),
        latency=latency.astype(np.int64),
    )


def _episodes(starts: npt.NDArray[np.bool_], length: int) -> npt.NDArray[np.bool_]:
    """Episodes of `length` intervals from their starts (last axis: intervals)."""
    episode = np.zeros(starts.shape, dtype=bool)
    for lag in range(min(length, starts.shape[-1])):
        episode[..., lag:] |= starts[..., : starts.shape[-1] - lag]
    return episode


def _ar1(shape: tuple[int, ...], sd: float, rho: float, rng: np.random.Generator) -> FloatArray:
    """A stationary AR(1) series along the last axis, marginal sd `sd`."""
    innovations = rng.normal(0.0, sd * math.sqrt(1.0 - rho**2), shape)
    drift = np.empty(shape)
    drift[..., 0] = rng.normal(0.0, sd, shape[:-1])
    for i in range(1, shape[-1]):
        drift[..., i] = rho * drift[..., i - 1] + innovations[..., i]
    return drift
