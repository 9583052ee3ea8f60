"""Checks beside the judge at the end of every step: what the gateway saw, and resources.

The judge reads what the service says about itself through Prometheus. These checks read two
other witnesses, directly and exactly (counters at the step's start and end, no extrapolation):

- the gateway: HAProxy's per-server counters from its Prometheus exporter. A request the canary
  never answered (connection or response error), or a 5xx the gateway gave for the canary's
  server that the canary's own metrics lack, is an error users saw. The canary's gateway 5xx
  ratio since it started is also tested against the baseline's (Fisher's exact test).
- resources: each track's own `/metrics`, RSS growth over the step and CPU seconds per request,
  canary against baseline, with the tolerances of the policy's `checks:` section.

Functional core: `evaluate()` over two `Snapshot`s. Shell: `snapshot()` reads the endpoints.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from image_contracts.metrics import REQUESTS
from scipy.stats import fisher_exact

RSS = "image_service_process_resident_memory_bytes"
CPU = "image_service_process_cpu_seconds_total"
GW_RESPONSES = "haproxy_server_http_responses_total"
GW_CONNECTION_ERRORS = "haproxy_server_connection_errors_total"
GW_RESPONSE_ERRORS = "haproxy_server_response_errors_total"
MB = 1024 * 1024
TRACKS = ("canary", "baseline")


class ChecksPolicyError(ValueError):
    pass


@dataclass(frozen=True)
class ChecksPolicy:
    """Tolerances: the canary may use this much more than the baseline before a step fails."""

    memory_growth_mb: float = 48.0  # extra RSS growth over one step
    cpu_per_request_ratio: float = 2.0  # canary CPU seconds per request / baseline's
    cpu_min_requests: int = 50  # per track, before CPU per request is compared
    gateway_unanswered: int = 2  # requests the canary never answered (in-flight skew)
    gateway_alpha: float = 0.005  # canary 5xx ratio at the gateway above the baseline's

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "ChecksPolicy":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ChecksPolicyError(f"unknown key(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ChecksPolicyError(f"{key}: expected a number >= 0, got {value!r}")
            values[key] = type(getattr(cls(), key))(value)
        policy = cls(**values)
        if not 0 < policy.gateway_alpha < 1:
            raise ChecksPolicyError(f"gateway_alpha: expected 0 < alpha < 1, got {value!r}")
        return policy


@dataclass(frozen=True)
class TrackSample:
    """One track's own /metrics at one moment (None: the series was absent)."""

    rss_bytes: float | None
    cpu_seconds: float | None
    requests: float  # every request it answered
    errors_5xx: float


@dataclass(frozen=True)
class ServerSample:
    """HAProxy's counters for one server."""

    responses: float
    responses_5xx: float
    connection_errors: float
    response_errors: float


@dataclass(frozen=True)
class Snapshot:
    tracks: Mapping[str, TrackSample] = field(default_factory=dict)
    gateway: Mapping[str, ServerSample] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # a witness that could not be read


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


# --- parsing the exposition format (pure) -----------------------------------------------------
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> list[Sample]:
    out: list[Sample] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), value))
    return out


def _sum(samples: list[Sample], name: str, **want: str) -> float | None:
    values = [
        v
        for n, labels, v in samples
        if n == name and all(labels.get(k) == w for k, w in want.items())
    ]
    return sum(values) if values else None


def track_sample(text: str) -> TrackSample:
    samples = parse(text)
    errors = sum(
        v for n, labels, v in samples if n == REQUESTS and labels.get("code", "").startswith("5")
    )
    return TrackSample(
        rss_bytes=_sum(samples, RSS),
        cpu_seconds=_sum(samples, CPU),
        requests=_sum(samples, REQUESTS) or 0.0,
        errors_5xx=errors,
    )


def gateway_samples(text: str, backend: str) -> dict[str, ServerSample]:
    samples = parse(text)
    out: dict[str, ServerSample] = {}
    for server in TRACKS:
        ids = {"proxy": backend, "server": server}
        out[server] = ServerSample(
            responses=_sum(samples, GW_RESPONSES, **ids) or 0.0,
            responses_5xx=_sum(samples, GW_RESPONSES, code="5xx", **ids) or 0.0,
            connection_errors=_sum(samples, GW_CONNECTION_ERRORS, **ids) or 0.0,
            response_errors=_sum(samples, GW_RESPONSE_ERRORS, **ids) or 0.0,
        )
    return out


# --- the checks (pure) -------------------------------------------------------------------------
def memory_check(start: Snapshot, end: Snapshot, policy: ChecksPolicy) -> CheckResult | None:
    growth: dict[str, float] = {}
    for track in TRACKS:
        a, b = start.tracks.get(track), end.tracks.get(track)
        if a is None or b is None or a.rss_bytes is None or b.rss_bytes is None:
            return None
        growth[track] = b.rss_bytes - a.rss_bytes
    extra = growth["canary"] - growth["baseline"]
    detail = (
        f"RSS grew {growth['canary'] / MB:+.1f} MB on the canary, "
        f"{growth['baseline'] / MB:+.1f} MB on the baseline "
        f"(tolerance +{policy.memory_growth_mb:g} MB)"
    )
    return CheckResult("memory growth", extra <= policy.memory_growth_mb * MB, detail)


def cpu_check(start: Snapshot, end: Snapshot, policy: ChecksPolicy) -> CheckResult | None:
    per: dict[str, float] = {}
    for track in TRACKS:
        a, b = start.tracks.get(track), end.tracks.get(track)
        if a is None or b is None or a.cpu_seconds is None or b.cpu_seconds is None:
            return None
        served = b.requests - a.requests
        if served < policy.cpu_min_requests:
            return None
        per[track] = (b.cpu_seconds - a.cpu_seconds) / served
    ratio = per["canary"] / per["baseline"] if per["baseline"] > 0 else 1.0
    detail = (
        f"CPU per request {per['canary'] * 1000:.2f} ms on the canary, "
        f"{per['baseline'] * 1000:.2f} ms on the baseline "
        f"(x{ratio:.2f}, tolerance x{policy.cpu_per_request_ratio:g})"
    )
    return CheckResult("CPU per request", ratio <= policy.cpu_per_request_ratio, detail)


def unanswered_check(start: Snapshot, end: Snapshot, policy: ChecksPolicy) -> CheckResult | None:
    """Requests the gateway sent the canary that users saw fail and the canary never counted."""
    ga, gb = start.gateway.get("canary"), end.gateway.get("canary")
    ta, tb = start.tracks.get("canary"), end.tracks.get("canary")
    if ga is None or gb is None:
        return None
    failed = (gb.connection_errors - ga.connection_errors) + (
        gb.response_errors - ga.response_errors
    )
    gateway_5xx = gb.responses_5xx - ga.responses_5xx
    own_5xx = tb.errors_5xx - ta.errors_5xx if ta is not None and tb is not None else 0.0
    unseen = failed + max(0.0, gateway_5xx - own_5xx)
    detail = (
        f"the gateway saw {gateway_5xx:.0f} 5xx and {failed:.0f} connection/response errors "
        f"for the canary; the canary itself counted {own_5xx:.0f} 5xx"
    )
    return CheckResult("gateway view", unseen <= policy.gateway_unanswered, detail)


def error_ratio_check(since: Snapshot, end: Snapshot, policy: ChecksPolicy) -> CheckResult | None:
    """The canary's 5xx ratio at the gateway since it started, against the baseline's: exact
    counts, one-sided Fisher test, so a 2% error rate is not lost in a step's few samples."""
    counts: dict[str, tuple[float, float]] = {}
    for server in TRACKS:
        a, b = since.gateway.get(server), end.gateway.get(server)
        if a is None or b is None:
            return None
        bad = (b.responses_5xx - a.responses_5xx) + (b.connection_errors - a.connection_errors)
        counts[server] = (bad, max(b.responses - a.responses - bad, 0.0))
    (cb, cg), (bb, bg) = counts["canary"], counts["baseline"]
    if cb + cg == 0 or bb + bg == 0:
        return None
    table = np.array([[round(cb), round(cg)], [round(bb), round(bg)]], dtype=np.int64)
    p = float(fisher_exact(table, alternative="greater")[1])
    detail = (
        f"gateway errors since the canary started: canary {cb:.0f}/{cb + cg:.0f} "
        f"({cb / (cb + cg):.2%}), baseline {bb:.0f}/{bb + bg:.0f} ({bb / (bb + bg):.2%}), "
        f"p={p:.4f} (alpha {policy.gateway_alpha:g})"
    )
    return CheckResult("gateway error ratio", cb == 0 or p >= policy.gateway_alpha, detail)


def evaluate(
    since: Snapshot, start: Snapshot, end: Snapshot, policy: ChecksPolicy
) -> tuple[CheckResult, ...]:
    """Every check that has its data, for the step between `start` and `end` (`since`: when
    the canary started, for the cumulative error ratio)."""
    found = (
        unanswered_check(start, end, policy),
        error_ratio_check(since, end, policy),
        memory_check(start, end, policy),
        cpu_check(start, end, policy),
    )
    return tuple(r for r in found if r is not None)


def failure_reason(results: tuple[CheckResult, ...]) -> str:
    failed = [r for r in results if not r.passed]
    return "; ".join(f"{r.name}: {r.detail}" for r in failed)


# --- reading the witnesses (effects) ----------------------------------------------------------
def snapshot(
    urls: Mapping[str, str], gateway_metrics: str, backend: str, timeout: float = 5.0
) -> Snapshot:
    """Each track's /metrics and the gateway's exporter, now. A witness that does not answer is
    left out with a note (liveness decides about a dead process, not this)."""
    tracks: dict[str, TrackSample] = {}
    notes: list[str] = []
    gateway: dict[str, ServerSample] = {}
    with httpx.Client(timeout=timeout) as client:
        for track, url in urls.items():
            try:
                tracks[track] = track_sample(client.get(f"{url}/metrics").text)
            except httpx.HTTPError as exc:
                notes.append(f"{track} /metrics: {type(exc).__name__}")
        if gateway_metrics:
            try:
                gateway = gateway_samples(client.get(gateway_metrics).text, backend)
            except httpx.HTTPError as exc:
                notes.append(f"gateway metrics: {type(exc).__name__}")
    return Snapshot(tracks, gateway, tuple(notes))
