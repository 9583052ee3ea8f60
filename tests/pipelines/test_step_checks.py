"""Checks beside the judge: the gateway's exact counters and each track's own resources."""

import pytest
from delivery.step_checks import (
    CheckResult,
    ChecksPolicy,
    ChecksPolicyError,
    ServerSample,
    Snapshot,
    TrackSample,
    evaluate,
    gateway_samples,
    track_sample,
)

MB = 1024 * 1024
POLICY = ChecksPolicy()

SERVICE_METRICS = """# HELP image_service_process_resident_memory_bytes Resident memory (RSS).
# TYPE image_service_process_resident_memory_bytes gauge
image_service_process_resident_memory_bytes{track="canary",version="v2"} 5.24288e+07
# TYPE image_service_process_cpu_seconds counter
image_service_process_cpu_seconds_total{track="canary",version="v2"} 3.5
image_service_http_requests_total{code="200",route="/v1/i",tenant="acme"} 90.0
image_service_http_requests_total{code="503",route="/v1/i",tenant="acme"} 4.0
image_service_http_requests_total{code="500",route="/v1/u",tenant="globex"} 6.0
"""

HAPROXY_METRICS = """# TYPE haproxy_server_http_responses_total counter
haproxy_server_http_responses_total{proxy="image",server="canary",code="2xx"} 480
haproxy_server_http_responses_total{proxy="image",server="canary",code="5xx"} 20
haproxy_server_http_responses_total{proxy="image",server="baseline",code="2xx"} 500
haproxy_server_http_responses_total{proxy="gateway",server="canary",code="5xx"} 999
haproxy_server_connection_errors_total{proxy="image",server="canary"} 3
haproxy_server_response_errors_total{proxy="image",server="canary"} 1
"""


def test_a_tracks_own_metrics_are_read_as_exposed() -> None:
    sample = track_sample(SERVICE_METRICS)
    assert sample == TrackSample(rss_bytes=50 * MB, cpu_seconds=3.5, requests=100, errors_5xx=10)
    assert track_sample("") == TrackSample(None, None, 0.0, 0.0)


def test_the_gateways_counters_are_per_server_of_the_backend() -> None:
    got = gateway_samples(HAPROXY_METRICS, "image")
    assert got["canary"] == ServerSample(500, 20, 3, 1)
    assert got["baseline"] == ServerSample(500, 0, 0, 0)


def snap(
    canary: TrackSample, baseline: TrackSample, gw_canary: ServerSample, gw_baseline: ServerSample
) -> Snapshot:
    return Snapshot(
        {"canary": canary, "baseline": baseline}, {"canary": gw_canary, "baseline": gw_baseline}
    )


ZERO_T = TrackSample(50 * MB, 10.0, 0, 0)
ZERO_G = ServerSample(0, 0, 0, 0)
START = snap(ZERO_T, ZERO_T, ZERO_G, ZERO_G)


def by_name(results: tuple[CheckResult, ...]) -> dict[str, bool]:
    return {r.name: r.passed for r in results}


def test_a_healthy_step_passes_every_check() -> None:
    end = snap(
        TrackSample(60 * MB, 12.0, 500, 0),
        TrackSample(58 * MB, 12.2, 500, 0),
        ServerSample(500, 0, 0, 0),
        ServerSample(500, 0, 0, 0),
    )
    assert by_name(evaluate(START, START, end, POLICY)) == {
        "gateway view": True,
        "gateway error ratio": True,
        "memory growth": True,
        "CPU per request": True,
    }


def test_memory_growth_beyond_the_baselines_fails() -> None:
    end = snap(
        TrackSample(250 * MB, 12.0, 500, 0),
        TrackSample(55 * MB, 12.0, 500, 0),
        ServerSample(500, 0, 0, 0),
        ServerSample(500, 0, 0, 0),
    )
    (memory,) = [r for r in evaluate(START, START, end, POLICY) if r.name == "memory growth"]
    assert not memory.passed
    assert memory.detail.startswith("RSS grew +200.0 MB on the canary, +5.0 MB on the baseline")


def test_cpu_per_request_beyond_the_tolerance_fails() -> None:
    end = snap(
        TrackSample(50 * MB, 10.0 + 500 * 0.03, 500, 0),
        TrackSample(50 * MB, 10.0 + 500 * 0.01, 500, 0),
        ZERO_G,
        ZERO_G,
    )
    assert by_name(evaluate(START, START, end, POLICY))["CPU per request"] is False


def test_5xx_the_canary_never_counted_fail_the_gateway_view() -> None:
    # 10 5xx at the gateway, 2 counted by the canary itself: 8 users saw that it never answered.
    end = snap(
        TrackSample(50 * MB, 12.0, 500, 2),
        TrackSample(50 * MB, 12.0, 500, 0),
        ServerSample(500, 10, 0, 0),
        ServerSample(500, 0, 0, 0),
    )
    results = evaluate(START, START, end, POLICY)
    (view,) = [r for r in results if r.name == "gateway view"]
    assert not view.passed
    assert "the gateway saw 10 5xx" in view.detail
    assert "counted 2 5xx" in view.detail


def test_a_low_error_rate_against_a_clean_baseline_fails_the_gateway_ratio() -> None:
    # 2% of 600 against 0 of 600: a handful of errors, but exact counts make it clear.
    end = snap(
        TrackSample(50 * MB, 12.0, 600, 12),
        TrackSample(50 * MB, 12.0, 600, 0),
        ServerSample(600, 12, 0, 0),
        ServerSample(600, 0, 0, 0),
    )
    (ratio,) = [r for r in evaluate(START, START, end, POLICY) if r.name == "gateway error ratio"]
    assert not ratio.passed
    assert "canary 12/600 (2.00%), baseline 0/600 (0.00%)" in ratio.detail
    # The same 12 errors on both sides are not the canary's doing.
    same = snap(ZERO_T, ZERO_T, ServerSample(600, 12, 0, 0), ServerSample(600, 12, 0, 0))
    assert by_name(evaluate(START, START, same, POLICY))["gateway error ratio"] is True


def test_missing_witnesses_leave_their_checks_out() -> None:
    assert evaluate(Snapshot(), Snapshot(), Snapshot(), POLICY) == ()


def test_the_policy_is_strict() -> None:
    assert ChecksPolicy.from_mapping({"memory_growth_mb": 10}).memory_growth_mb == 10.0
    with pytest.raises(ChecksPolicyError, match="unknown"):
        ChecksPolicy.from_mapping({"memory": 10})
    with pytest.raises(ChecksPolicyError, match="expected a number"):
        ChecksPolicy.from_mapping({"memory_growth_mb": "10"})
    with pytest.raises(ChecksPolicyError, match="gateway_alpha"):
        ChecksPolicy.from_mapping({"gateway_alpha": 1})
