"""Alerts locally: the platform's PrometheusRules in the local Prometheus, and Debian's
`prometheus-alertmanager` on 127.0.0.1 receiving what they fire.

- Rules: `alert_rules.yml` beside this module is the platform's rule groups
  (`infra.observability.rules.all_groups()` rendered with `render()`), committed as an artifact
  because the delivery package must not import `infra` (Pulumi) at run time. A test renders the
  platform's groups again and fails when the artifact differs; `python -m
  delivery.alerting_local --write-rules` regenerates it (run from the workspace, where `infra`
  is installed).
- Routing: the platform's kube-prometheus-stack release sets no Alertmanager config, so the
  chart's default applies (everything to a receiver called `null`). `ROUTING` below is the
  routing as data: by severity to `page` and `ticket`, the rest to `null`; each receiver may
  carry a webhook. The local config is rendered from it; the platform can render its
  `alertmanager.config` value from the same data once it moves to the shared contracts.
- Prometheus: `with_alerting()` adds the `alerting:` block to the local Prometheus config.

Pure: `render_alertmanager_config()`, `with_alerting()`, `parse_alerts()`. Shell:
`start_alertmanager()`, `install_rules()`, `firing_alerts()`, `wait_for_alert()`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from delivery import procs

RULES_RESOURCE = "alert_rules.yml"
# Runbooks as the repository lays them out; the platform links to the same files on GitHub.
LOCAL_RUNBOOK_BASE = "docs/runbooks"
ALERTMANAGER_COMMANDS = ("prometheus-alertmanager", "alertmanager")  # Debian's name first


# --- routing as data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Receiver:
    name: str
    webhook_url: str | None = None  # None: received and listed, delivered nowhere


@dataclass(frozen=True)
class Route:
    receiver: str
    matchers: tuple[str, ...]


@dataclass(frozen=True)
class Routing:
    default_receiver: str
    group_by: tuple[str, ...]
    routes: tuple[Route, ...]
    receivers: tuple[Receiver, ...]
    group_wait: str = "10s"
    group_interval: str = "1m"
    repeat_interval: str = "4h"

    def with_webhook(self, receiver: str, url: str) -> Routing:
        if receiver not in {r.name for r in self.receivers}:
            raise ValueError(f"no receiver {receiver!r}")
        chosen = tuple(Receiver(r.name, url) if r.name == receiver else r for r in self.receivers)
        return dataclasses.replace(self, receivers=chosen)


ROUTING = Routing(
    default_receiver="null",
    group_by=("alertname", "tenant", "track"),
    routes=(
        Route("page", ('severity="page"',)),
        Route("ticket", ('severity="ticket"',)),
    ),
    receivers=(Receiver("null"), Receiver("page"), Receiver("ticket")),
)


def render_alertmanager_config(routing: Routing = ROUTING) -> str:
    """Alertmanager's YAML (JSON is YAML), from the routing data."""
    names = {r.name for r in routing.receivers}
    unknown = [r.receiver for r in routing.routes if r.receiver not in names]
    if routing.default_receiver not in names or unknown:
        raise ValueError(f"routes name receivers that do not exist: {unknown}")
    receivers: list[dict[str, Any]] = []
    for r in routing.receivers:
        body: dict[str, Any] = {"name": r.name}
        if r.webhook_url:
            body["webhook_configs"] = [{"url": r.webhook_url, "send_resolved": True}]
        receivers.append(body)
    config = {
        "route": {
            "receiver": routing.default_receiver,
            "group_by": list(routing.group_by),
            "group_wait": routing.group_wait,
            "group_interval": routing.group_interval,
            "repeat_interval": routing.repeat_interval,
            "routes": [
                {"receiver": r.receiver, "matchers": list(r.matchers)} for r in routing.routes
            ],
        },
        "receivers": receivers,
    }
    return json.dumps(config, indent=2) + "\n"


def with_alerting(prometheus_config: str, alertmanager: str) -> str:
    """The local Prometheus config plus an `alerting:` block sending to `host:port`."""
    if "\nalerting:" in prometheus_config or prometheus_config.startswith("alerting:"):
        raise ValueError("the Prometheus config already has an alerting block")
    block = (
        "alerting:\n"
        "  alertmanagers:\n"
        "    - api_version: v2\n"
        "      static_configs:\n"
        f"        - targets: ['{alertmanager}']\n"
    )
    return prometheus_config.rstrip("\n") + "\n" + block


# --- rules -------------------------------------------------------------------------------------
def rules_text() -> str:
    """The committed rule file: the platform's PrometheusRule groups."""
    return resources.files("delivery").joinpath(RULES_RESOURCE).read_text()


def install_rules(rules_dir: Path) -> Path:
    """Write the platform's rules where the local Prometheus loads `rules/*.yml`."""
    rules_dir.mkdir(parents=True, exist_ok=True)
    target = rules_dir / "platform-rules.yml"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(rules_text())
    tmp.replace(target)
    return target


# --- alerts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FiringAlert:
    name: str
    state: str  # active | suppressed | unprocessed
    labels: Mapping[str, str] = field(default_factory=dict)
    receivers: tuple[str, ...] = ()
    starts_at: str = ""
    summary: str = ""

    def describe(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k != "alertname")
        to = "/".join(self.receivers) or "-"
        return f"{self.name} [{self.state}] since {self.starts_at} -> {to}: {where}"


def parse_alerts(payload: Any) -> tuple[FiringAlert, ...]:
    """Alertmanager's `GET /api/v2/alerts` body, reduced."""
    if not isinstance(payload, list):
        raise ValueError("expected a JSON list of alerts")
    out: list[FiringAlert] = []
    for item in payload:
        labels = {str(k): str(v) for k, v in dict(item.get("labels", {})).items()}
        receivers = tuple(str(r.get("name", "")) for r in item.get("receivers", []))
        out.append(
            FiringAlert(
                name=labels.get("alertname", "?"),
                state=str(dict(item.get("status", {})).get("state", "?")),
                labels=labels,
                receivers=receivers,
                starts_at=str(item.get("startsAt", "")),
                summary=str(dict(item.get("annotations", {})).get("summary", "")),
            )
        )
    return tuple(out)


def firing_alerts(alertmanager_url: str, timeout: float = 5.0) -> tuple[FiringAlert, ...]:
    response = httpx.get(f"{alertmanager_url.rstrip('/')}/api/v2/alerts", timeout=timeout)
    response.raise_for_status()
    return parse_alerts(response.json())


def wait_for_alert(
    alertmanager_url: str, names: Sequence[str], timeout: float, poll: float = 0.5
) -> FiringAlert:
    """The first alert named in `names` that Alertmanager holds, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    seen: tuple[FiringAlert, ...] = ()
    while True:
        try:
            seen = firing_alerts(alertmanager_url)
        except httpx.HTTPError:
            seen = ()
        for alert in seen:
            if alert.name in names:
                return alert
        if time.monotonic() >= deadline:
            held = ", ".join(a.name for a in seen) or "none"
            raise TimeoutError(
                f"none of {list(names)} reached Alertmanager in {timeout}s (it holds: {held})"
            )
        time.sleep(poll)


def alertmanager_command() -> str:
    for name in ALERTMANAGER_COMMANDS:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if found:
            return found
    raise FileNotFoundError(
        "Alertmanager is not installed: apt-get install prometheus-alertmanager "
        "(scripts/setup.sh does it)"
    )


def start_alertmanager(
    state_dir: Path, routing: Routing = ROUTING, *, port: int | None = None
) -> procs.Proc:
    """Alertmanager on 127.0.0.1 with clustering off, config rendered from `routing`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "alertmanager.yml"
    config.write_text(render_alertmanager_config(routing))
    data = state_dir / "alertmanager-data"
    data.mkdir(exist_ok=True)
    chosen = port or procs.free_port()
    proc = procs.spawn(
        "alertmanager",
        [
            alertmanager_command(),
            f"--config.file={config}",
            f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{chosen}",
            "--cluster.listen-address=",  # no gossip port on 0.0.0.0:9094
        ],
        port=chosen,
        log=state_dir / "alertmanager.log",
    )
    procs.wait_http(proc, f"http://127.0.0.1:{chosen}/-/ready", timeout=30)
    return proc


# --- regenerating the artifact -----------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write-rules", action="store_true", help="regenerate alert_rules.yml")
    args = parser.parse_args(argv)
    if not args.write_rules:
        parser.print_help()
        return 2
    import yaml
    from infra.observability import rules  # development only: needs the workspace's `infra`

    text = yaml.safe_dump(
        rules.render(rules.all_groups(), LOCAL_RUNBOOK_BASE), sort_keys=False, width=100
    )
    target = Path(str(resources.files("delivery").joinpath(RULES_RESOURCE)))
    target.write_text(GENERATED_HEADER + text)
    print(f"wrote {target}")
    return 0


GENERATED_HEADER = (
    "# Generated from infra.observability.rules by "
    "`uv run python -m delivery.alerting_local --write-rules`; do not edit.\n"
)


if __name__ == "__main__":
    raise SystemExit(main())
