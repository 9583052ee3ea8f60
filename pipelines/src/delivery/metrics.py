"""`MetricsSource`: one step's window, read from the Prometheus HTTP API, as a `StepObservation`.

Thanos Query speaks the same API, so one implementation serves local and AWS. For each track
(canary at its version, baseline at the stable version) three `query_range` calls at the judge's
interval: requests, 5xx errors and latency buckets, each `sum by (tenant[, le]) (increase(..[I]))`
so every point is that interval's count. Only API routes (`/v1/...`) are judged.
"""

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from image_contracts.metrics import LATENCY_BUCKETS, REQUESTS
from image_contracts.metrics import REQUEST_DURATION_BUCKET as BUCKETS

from delivery.observation import Interval, StepObservation, TrackSeries

# The service's histogram buckets: used only to shape an observation that has no data at all.
DEFAULT_BOUNDS = LATENCY_BUCKETS


class MetricsUnavailableError(RuntimeError):
    """The metrics backend could not answer: the judge must not pass on no data."""


@dataclass(frozen=True)
class Window:
    start: float  # unix seconds
    end: float
    interval: float
    canary_version: str
    baseline_version: str


class MetricsSource(Protocol):
    def observe(self, window: Window) -> StepObservation: ...


def selector(track: str, version: str, extra: str = "") -> str:
    for value in (track, version):
        if not value.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"refusing to put {value!r} into a PromQL selector")
    return f'track="{track}",version="{version}",route=~"/v1/.*"{extra}'


def queries(track: str, version: str, interval: float) -> dict[str, str]:
    rng = f"[{round(interval * 1000)}ms]"
    return {
        "requests": f"sum by (tenant) (increase({REQUESTS}{{{selector(track, version)}}}{rng}))",
        "errors": (
            f"sum by (tenant) (increase({REQUESTS}"
            f"{{{selector(track, version, ',code=~' + chr(34) + '5..' + chr(34))}}}{rng}))"
        ),
        "buckets": f"sum by (tenant, le) (increase({BUCKETS}{{{selector(track, version)}}}{rng}))",
    }


Points = dict[tuple[str, ...], dict[float, float]]  # label values -> timestamp -> value


def _points(result: list[Mapping[str, Any]], labels: tuple[str, ...]) -> Points:
    out: Points = {}
    for series in result:
        key = tuple(str(series["metric"].get(label, "")) for label in labels)
        values = out.setdefault(key, {})
        for ts, raw in series.get("values", []):
            value = float(raw)
            values[float(ts)] = value if math.isfinite(value) and value > 0 else 0.0
    return out


def build_track(
    requests: Points, errors: Points, buckets: Points
) -> tuple[TrackSeries, tuple[float, ...]]:
    """Pure: assemble per-tenant intervals from the three query results."""
    # `le` is a label string ("1.0", "0.005"): keep each bound's own spelling for the lookup.
    spelling = {float(le): le for (_, le) in buckets if le != "+Inf"}
    bounds = sorted(spelling)
    tenants: dict[str, tuple[Interval, ...]] = {}
    for (tenant,), by_ts in sorted(requests.items()):
        err = errors.get((tenant,), {})
        intervals = []
        for ts in sorted(by_ts):
            req = by_ts[ts]
            cumulative = [buckets.get((tenant, spelling[b]), {}).get(ts, 0.0) for b in bounds]
            total = buckets.get((tenant, "+Inf"), {}).get(ts, 0.0)
            cumulative.append(max(total, cumulative[-1] if cumulative else 0.0))
            # Non-cumulative, clamped: increase() extrapolates each series on its own.
            counts = [max(cumulative[0], 0.0)] + [
                max(b - a, 0.0) for a, b in itertools.pairwise(cumulative)
            ]
            intervals.append(
                Interval(
                    requests=req, errors=min(err.get(ts, 0.0), req), latency_counts=tuple(counts)
                )
            )
        tenants[tenant] = tuple(intervals)
    return TrackSeries(tenants=tenants), tuple(bounds)


class PrometheusSource:
    def __init__(self, base_url: str, timeout: float = 10.0, client: httpx.Client | None = None):
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        try:
            resp = self.client.get(
                f"{self.base_url}/api/v1/query_range",
                params={"query": expr, "start": start, "end": end, "step": step},
            )
        except httpx.HTTPError as exc:
            raise MetricsUnavailableError(
                f"Prometheus at {self.base_url} is unreachable: {exc}"
            ) from exc
        try:
            body = resp.json()
        except ValueError as exc:
            raise MetricsUnavailableError(
                f"Prometheus answered {resp.status_code} without JSON"
            ) from exc
        if resp.status_code != 200 or body.get("status") != "success":
            raise MetricsUnavailableError(
                f"Prometheus query failed ({resp.status_code}): {body.get('error', body)}"
            )
        result: list[Any] = body["data"]["result"]
        return result

    def observe(self, window: Window) -> StepObservation:
        # The first point covers (start, start + I]; points are aligned to the step's start.
        first = window.start + window.interval
        if window.end < first:
            raise ValueError("the window is shorter than one interval")
        tracks: dict[str, TrackSeries] = {}
        all_bounds: set[tuple[float, ...]] = set()
        for track, version in (
            ("canary", window.canary_version),
            ("baseline", window.baseline_version),
        ):
            q = queries(track, version, window.interval)
            got = {
                name: self.query_range(expr, first, window.end, window.interval)
                for name, expr in q.items()
            }
            series, bounds = build_track(
                _points(got["requests"], ("tenant",)),
                _points(got["errors"], ("tenant",)),
                _points(got["buckets"], ("tenant", "le")),
            )
            tracks[track] = series
            if bounds:
                all_bounds.add(bounds)
        if len(all_bounds) > 1:
            raise MetricsUnavailableError(
                f"canary and baseline disagree on latency buckets: {all_bounds}"
            )
        bounds = all_bounds.pop() if all_bounds else DEFAULT_BOUNDS
        return StepObservation(
            bounds=bounds,
            interval_seconds=window.interval,
            canary=tracks["canary"],
            baseline=tracks["baseline"],
        )


def empty_observation(interval: float) -> StepObservation:
    """What the judge sees when the backend is down: no data, which fails critical metrics."""
    return StepObservation(
        bounds=DEFAULT_BOUNDS,
        interval_seconds=interval,
        canary=TrackSeries(tenants={}),
        baseline=TrackSeries(tenants={}),
    )
