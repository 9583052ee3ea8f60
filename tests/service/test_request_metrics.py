"""The plain-number request series export exactly what prometheus_client's own metrics would.

The reference is prometheus_client itself: the same observations go into a Counter, a Histogram
and a Counter of the library, and both expositions are parsed and compared sample by sample.
"""

from __future__ import annotations

from image_contracts.metrics import LATENCY_BUCKETS, REQUEST_DURATION, REQUESTS
from image_service.request_metrics import BYTES_SENT, INFLIGHT, RequestMetrics
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

BASE = {"track": "canary", "version": "abc123"}
ROUTE = "/v1/{tenant}/images/{image_id}"
# (tenant, route, method, code, seconds, bytes): edges of buckets included on purpose.
OBSERVATIONS = [
    ("acme", ROUTE, "GET", "200", 0.005, 1000),
    ("acme", ROUTE, "GET", "200", 0.0051, 2000),
    ("acme", ROUTE, "GET", "304", 0.0, 0),
    ("beta", ROUTE, "GET", "200", 30.0, 5),
    ("beta", ROUTE, "GET", "200", 31.0, 7),
    ("unknown", "unmatched", "GET", "404", 0.25, 90),
    ("acme", "/v1/{tenant}/images", "POST", "201", 1.0, 300),
]


def _samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample but the creation timestamps (which differ by construction)."""
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _reference() -> str:
    registry = CollectorRegistry()
    tv = list(BASE)
    requests = Counter(
        REQUESTS.removesuffix("_total"),
        "",
        [*tv, "tenant", "route", "method", "code"],
        registry=registry,
    )
    duration = Histogram(
        REQUEST_DURATION,
        "",
        [*tv, "tenant", "route", "method"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    sent = Counter(BYTES_SENT, "", [*tv, "tenant"], registry=registry)
    for tenant, route, method, code, seconds, size in OBSERVATIONS:
        requests.labels(*BASE.values(), tenant, route, method, code).inc()
        duration.labels(*BASE.values(), tenant, route, method).observe(seconds)
        if tenant != "unknown":
            sent.labels(*BASE.values(), tenant).inc(size)
    return generate_latest(registry).decode()


def _ours(inflight: int = 0) -> str:
    registry = CollectorRegistry()
    metrics = RequestMetrics(BASE)
    registry.register(metrics)
    for observation in OBSERVATIONS:
        metrics.record(*observation)
    metrics.inflight = inflight
    return generate_latest(registry).decode()


def test_same_samples_as_prometheus_client() -> None:
    ours = _samples(_ours())
    in_flight = {s for s in ours if s[0] == INFLIGHT}
    assert ours - in_flight == _samples(_reference())


def test_creation_times_are_exported_for_every_series() -> None:
    names = {
        s.name
        for family in text_string_to_metric_families(_ours())
        for s in family.samples
        if s.name.endswith("_created")
    }
    assert names == {
        "image_service_http_requests_created",
        f"{REQUEST_DURATION}_created",
        f"{BYTES_SENT}_created",
    }


def test_in_flight_gauge_reports_the_current_count() -> None:
    labels = tuple(sorted(BASE.items()))
    assert (INFLIGHT, labels, 3.0) in _samples(_ours(inflight=3))
    assert (INFLIGHT, labels, 0.0) in _samples(_ours())
