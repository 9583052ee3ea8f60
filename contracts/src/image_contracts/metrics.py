"""Metric names, labels and histogram buckets: dashboards, alerts and the judge read these."""

REQUESTS = "image_service_http_requests_total"
REQUEST_DURATION = "image_service_http_request_duration_seconds"
REQUEST_DURATION_BUCKET = f"{REQUEST_DURATION}_bucket"

# Labels every request series carries.
TRACK_LABEL = "track"
VERSION_LABEL = "version"
TENANT_LABEL = "tenant"
ROUTE_LABEL = "route"
CODE_LABEL = "code"

# Upper bounds (seconds) of the request-latency histogram, +Inf excluded. The judge's latency test
# is only as fine as these edges, so both the service and the judge's model use this one tuple.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
