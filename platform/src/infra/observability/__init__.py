"""Monitoring for the estate: Prometheus+Thanos+Grafana releases, dashboards and rules as code."""
