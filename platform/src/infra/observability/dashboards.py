"""The four service dashboards, as data: golden signals, canary vs baseline, saturation, deploys.

Metric names and labels are the contract in docs/architecture.md (prefix `image_service_`).
Per-cell panels group by `cell`, fleet-wide ones sum without it (ADR 138). No `$cell` filter:
a variable's "All" is `.+`, which would hide series from outside cells (and the console fills
every variable that way).
"""

from __future__ import annotations

from image_contracts.metrics import REQUEST_DURATION as DURATION
from image_contracts.metrics import REQUESTS

from infra.observability.grafana_model import Annotation, Dashboard, Panel, Target, Variable

CACHE = "image_service_rendition_cache_total"
_TRACK = '{track=~"$track"}'

TENANT = Variable(name="tenant", metric=REQUESTS, label="tenant")
TRACK = Variable(name="track", metric=REQUESTS, label="track")
VERSION = Variable(name="version", metric=REQUESTS, label="version")

_T = 'tenant=~"$tenant"'
_TV = 'track=~"$track", version=~"$version"'
_RI = "$__rate_interval"


def _error_ratio(by: str, selector: str) -> str:
    # `or ... * 0` keeps a zero series for groups that never returned a 5xx.
    return (
        f'(sum by ({by}) (rate({REQUESTS}{{{selector}, code=~"5.."}}[{_RI}]))'
        f" or sum by ({by}) (rate({REQUESTS}{{{selector}}}[{_RI}])) * 0)"
        f" / sum by ({by}) (rate({REQUESTS}{{{selector}}}[{_RI}]))"
    )


def _quantile(q: float, by: str, selector: str) -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}, le) (rate({DURATION}_bucket{{{selector}}}[{_RI}])))"
    )


def golden_signals() -> Dashboard:
    return Dashboard(
        uid="image-service-golden",
        title="Image service - golden signals per tenant",
        variables=(TENANT,),
        panels=(
            Panel(
                "Traffic (req/s)",
                (Target(f"sum by (tenant) (rate({REQUESTS}{{{_T}}}[{_RI}]))", "{{tenant}}"),),
                unit="reqps",
            ),
            Panel(
                "Errors (5xx ratio)",
                (Target(_error_ratio("tenant", _T), "{{tenant}}"),),
                "percentunit",
            ),
            Panel(
                "Latency p50 / p99",
                (
                    Target(_quantile(0.5, "tenant", _T), "p50 {{tenant}}"),
                    Target(_quantile(0.99, "tenant", _T), "p99 {{tenant}}"),
                ),
                unit="s",
            ),
            Panel(
                "Bytes sent (B/s)",
                (
                    Target(
                        f"sum by (tenant) (rate(image_service_bytes_sent_total{{{_T}}}[{_RI}]))",
                        "{{tenant}}",
                    ),
                ),
                unit="Bps",
            ),
            Panel(
                "Rendition cache hit ratio",
                (
                    Target(
                        # `or ... * 0`: a zero ratio before the first hit, not an empty panel.
                        f'(sum by (tenant) (rate({CACHE}{{{_T}, result="hit"}}[{_RI}]))'
                        f" or sum by (tenant) (rate({CACHE}{{{_T}}}[{_RI}])) * 0)"
                        f" / sum by (tenant) (rate({CACHE}{{{_T}}}[{_RI}]))",
                        "{{tenant}}",
                    ),
                ),
                unit="percentunit",
            ),
            Panel(
                "Responses by code",
                (Target(f"sum by (code) (rate({REQUESTS}{{{_T}}}[{_RI}]))", "{{code}}"),),
                unit="reqps",
            ),
            Panel(
                "Traffic per cell (req/s)",
                (Target(f"sum by (cell) (rate({REQUESTS}{{{_T}}}[{_RI}]))", "{{cell}}"),),
                unit="reqps",
            ),
            Panel(
                "Errors per cell and fleet-wide (5xx ratio)",
                (
                    Target(_error_ratio("cell", _T), "{{cell}}"),
                    # Fleet-wide: every cell summed. The `or ... * 0` arm gives 0, not "no
                    # data", in a minute without any 5xx.
                    Target(
                        f'(sum(rate({REQUESTS}{{{_T}, code=~"5.."}}[{_RI}]))'
                        f" or sum(rate({REQUESTS}{{{_T}}}[{_RI}])) * 0)"
                        f" / sum(rate({REQUESTS}{{{_T}}}[{_RI}]))",
                        "fleet",
                    ),
                ),
                unit="percentunit",
            ),
        ),
    )


def canary_vs_baseline() -> Dashboard:
    return Dashboard(
        uid="image-service-canary",
        title="Image service - canary vs baseline",
        variables=(TRACK, VERSION),
        panels=(
            Panel(
                "Traffic by track",
                (
                    Target(
                        f"sum by (cell, track, version) (rate({REQUESTS}{{{_TV}}}[{_RI}]))",
                        "{{cell}} {{track}} {{version}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Error ratio by track",
                (
                    Target(
                        _error_ratio("cell, track, version", _TV), "{{cell}} {{track}} {{version}}"
                    ),
                ),
                unit="percentunit",
            ),
            Panel(
                "p99 latency by track",
                (
                    Target(
                        _quantile(0.99, "cell, track, version", _TV),
                        "{{cell}} {{track}} {{version}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Transform p95 by track",
                (
                    Target(
                        "histogram_quantile(0.95, sum by (cell, track, version, le) "
                        f"(rate(image_service_transform_duration_seconds_bucket{{{_TV}}}[{_RI}])))",
                        "{{cell}} {{track}} {{version}}",
                    ),
                ),
                unit="s",
            ),
        ),
    )


def saturation() -> Dashboard:
    return Dashboard(
        uid="image-service-saturation",
        title="Image service - saturation",
        variables=(TRACK,),
        panels=(
            Panel(
                "Transform queue depth",
                (
                    Target(
                        "max by (cell, track, instance) "
                        f"(image_service_transform_queue_depth{_TRACK})",
                        "{{cell}} {{track}} {{instance}}",
                    ),
                ),
            ),
            Panel(
                "Transform workers",
                (
                    Target(
                        f"sum by (cell, track) (image_service_transform_workers{_TRACK})",
                        "{{cell}} {{track}}",
                    ),
                ),
            ),
            Panel(
                "libvips memory",
                (
                    Target(
                        f"max by (cell, track, instance) (image_service_vips_memory_bytes{_TRACK})",
                        "{{cell}} {{track}} {{instance}}",
                    ),
                ),
                unit="bytes",
            ),
            Panel(
                "In-flight requests",
                (
                    Target(
                        f"sum by (cell, track) (image_service_inflight_requests{_TRACK})",
                        "{{cell}} {{track}}",
                    ),
                ),
            ),
        ),
    )


def deploys() -> Dashboard:
    return Dashboard(
        uid="image-service-deploys",
        title="Image service - deploy markers",
        annotations=(
            Annotation(
                name="Version started",
                # Per cell: a version reaching the next wave's cells is a marker of its own.
                expr="count by (cell, track, version) (image_service_build_info)"
                " unless count by (cell, track, version) (image_service_build_info offset 5m)",
                title_format="{{cell}} {{track}} -> {{version}}",
            ),
        ),
        panels=(
            Panel(
                "Versions serving (pods)",
                (
                    Target(
                        "count by (cell, track, version) (image_service_build_info)",
                        "{{cell}} {{track}} {{version}}",
                    ),
                ),
                width=24,
            ),
            Panel(
                "Traffic share by track",
                (
                    Target(
                        f"sum by (track) (rate({REQUESTS}[{_RI}]))"
                        f" / ignoring (track) group_left sum (rate({REQUESTS}[{_RI}]))",
                        "{{track}}",
                    ),
                ),
                unit="percentunit",
                width=24,
            ),
        ),
    )


def all_dashboards() -> tuple[Dashboard, ...]:
    return (golden_signals(), canary_vs_baseline(), saturation(), deploys())
