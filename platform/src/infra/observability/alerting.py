"""Where alerts go: Alertmanager routes page and ticket alerts to SNS topics (e-mail subscribed
by the platform stack), never to the chart's default `null` receiver. Pure, so amtool can check
the exact configuration the program ships (tests/infra/test_alerting.py)."""

from __future__ import annotations

from typing import Any

# kube-prometheus-stack's own rules speak critical/warning/info; ours page/ticket.
PAGE_SEVERITIES = ("page", "critical")
TICKET_SEVERITIES = ("ticket", "warning")
# Alerts that are meant never to notify: Watchdog (a dead man's switch, always firing) and
# InfoInhibitor (inhibits info alerts).
SILENT_ALERTS = ("Watchdog", "InfoInhibitor")


def _sns(topic_arn: str, region: str) -> dict[str, Any]:
    # No keys: Alertmanager's SigV4 uses the default AWS chain, i.e. IRSA's web identity.
    return {"topic_arn": topic_arn, "sigv4": {"region": region}, "send_resolved": True}


def alertmanager_config(page_topic: str, ticket_topic: str, region: str) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "ticket",  # anything unmatched is still seen by someone
            "group_by": ["alertname", "namespace", "severity"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"receiver": "null", "matchers": [f'alertname=~"{"|".join(SILENT_ALERTS)}"']},
                {
                    "receiver": "page",
                    "matchers": [f'severity=~"{"|".join(PAGE_SEVERITIES)}"'],
                    "repeat_interval": "1h",
                },
                {"receiver": "ticket", "matchers": [f'severity=~"{"|".join(TICKET_SEVERITIES)}"']},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="page"'],
                "target_matchers": ['severity="ticket"'],
                "equal": ["alertname", "namespace"],
            }
        ],
        "receivers": [
            {"name": "null"},
            {"name": "page", "sns_configs": [_sns(page_topic, region)]},
            {"name": "ticket", "sns_configs": [_sns(ticket_topic, region)]},
        ],
    }


def control_plane_off() -> dict[str, Any]:
    """EKS runs the control plane out of the cluster's reach: controller-manager, scheduler and
    etcd have no endpoints to scrape, and kube-proxy's metrics bind to 127.0.0.1 on EKS nodes.
    Their scrape jobs and rules would fire TargetDown and `*Down` alerts forever."""
    return {
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "defaultRules": {
            "rules": {
                "etcd": False,
                "kubeControllerManager": False,
                "kubeSchedulerAlerting": False,
                "kubeSchedulerRecording": False,
                "kubeProxy": False,
            }
        },
    }
