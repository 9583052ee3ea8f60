"""The Prometheus metrics source: PromQL it sends, and how answers become a StepObservation
(against httpx's MockTransport: no server needed)."""

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from delivery.metrics import (
    MetricsUnavailableError,
    Points,
    PrometheusSource,
    Window,
    build_track,
    queries,
    selector,
)


def test_queries_select_track_version_and_api_routes() -> None:
    q = queries("canary", "abc123", 2.0)
    assert q["requests"] == (
        'sum by (tenant) (increase(image_service_http_requests_total{track="canary",'
        'version="abc123",route=~"/v1/.*"}[2000ms]))'
    )
    assert 'code=~"5.."' in q["errors"]
    assert q["buckets"].startswith("sum by (tenant, le) (increase(")
    with pytest.raises(ValueError, match="refusing"):
        selector("canary", 'x"} or vector(1) #')


def test_build_track_turns_cumulative_buckets_into_counts() -> None:
    requests: Points = {("acme",): {10.0: 10.0, 12.0: 4.0}}
    errors: Points = {("acme",): {10.0: 11.0}}  # extrapolation noise above requests is clamped
    buckets: Points = {
        ("acme", "0.1"): {10.0: 6.0, 12.0: 4.0},
        ("acme", "1.0"): {10.0: 9.0, 12.0: 4.0},
        ("acme", "+Inf"): {10.0: 10.0, 12.0: 4.0},
    }
    track, bounds = build_track(requests, errors, buckets)
    assert bounds == (0.1, 1.0)
    first, second = track.tenants["acme"]
    assert first.requests == 10.0
    assert first.errors == 10.0
    assert first.latency_counts == (6.0, 3.0, 1.0)
    assert second.errors == 0.0
    assert second.latency_counts == (4.0, 0.0, 0.0)


def matrix(labels: dict[str, str], points: list[tuple[float, float]]) -> dict[str, Any]:
    return {"metric": labels, "values": [[t, str(v)] for t, v in points]}


def fake_prometheus(request: httpx.Request) -> httpx.Response:
    params = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
    query = params["query"]
    assert float(params["step"]) == 2.0
    assert float(params["start"]) == 102.0  # the first point covers (start, start + I]
    canary = 'track="canary"' in query
    points = [(102.0, 20.0), (104.0, 20.0)]
    if "_bucket" in query:
        result = [
            matrix({"tenant": "acme", "le": "0.05"}, points),
            matrix({"tenant": "acme", "le": "+Inf"}, points),
        ]
    elif "5.." in query:
        result = [matrix({"tenant": "acme"}, [(102.0, 2.0)])] if canary else []
    else:
        result = [matrix({"tenant": "acme"}, points)]
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    return httpx.Response(200, content=json.dumps(body))


def test_observe_builds_both_tracks() -> None:
    source = PrometheusSource(
        "http://prom", client=httpx.Client(transport=httpx.MockTransport(fake_prometheus))
    )
    obs = source.observe(Window(100.0, 104.0, 2.0, "v2", "v1"))
    assert obs.bounds == (0.05,)
    assert obs.interval_seconds == 2.0
    assert [i.errors for i in obs.canary.tenants["acme"]] == [2.0, 0.0]
    assert [i.errors for i in obs.baseline.tenants["acme"]] == [0.0, 0.0]
    assert obs.baseline.tenants["acme"][0].latency_counts == (20.0, 0.0)


def test_backend_errors_become_metrics_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def bad_query(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"status": "error", "error": "parse error"})

    window = Window(100.0, 104.0, 2.0, "v2", "v1")
    for handler, message in ((refuse, "unreachable"), (bad_query, "parse error")):
        client = httpx.Client(transport=httpx.MockTransport(handler))
        with pytest.raises(MetricsUnavailableError, match=message):
            PrometheusSource("http://prom", client=client).observe(window)
    with pytest.raises(ValueError, match="shorter than one interval"):
        PrometheusSource("http://prom").observe(Window(100.0, 101.0, 2.0, "v2", "v1"))
