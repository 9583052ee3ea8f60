"""Every PromQL expression the dashboards and rules use, made directly evaluable.

The delivery team's end-to-end test evaluates each one against a real Prometheus scraping the real
service, so a renamed metric or label shows up as an empty result instead of a blank panel.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from infra.observability import dashboards, rules

# Grafana template variables -> plain PromQL. Multi-value variables become a match-all regex.
SUBSTITUTIONS: dict[str, str] = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$tenant": ".+",
    "$track": ".+",
    "$version": ".+",
}


@dataclass(frozen=True)
class ExportedQuery:
    source: str  # "dashboard:<title>/<panel>[#n]", "annotation:<title>/<name>", "rule:<name>"
    expr: str
    # False for expressions that are rightly empty while healthy (alert conditions, metrics of
    # Thanos/Prometheus themselves, counters born on first error): evaluate, do not require data.
    expects_data: bool = True


def substitute(expr: str) -> str:
    # Longest names first, so `$__rate_interval` is not clipped by a shorter variable.
    for name in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(name, SUBSTITUTIONS[name])
    if "$" in expr:
        raise ValueError(f"unsubstituted template variable in: {expr}")
    return expr


def _dashboard_queries() -> list[ExportedQuery]:
    out: list[ExportedQuery] = []
    for board in dashboards.all_dashboards():
        for panel in board.panels:
            for index, target in enumerate(panel.targets):
                suffix = f"#{index}" if len(panel.targets) > 1 else ""
                out.append(
                    ExportedQuery(
                        f"dashboard:{board.title}/{panel.title}{suffix}", substitute(target.expr)
                    )
                )
        for annotation in board.annotations:
            out.append(
                ExportedQuery(
                    f"annotation:{board.title}/{annotation.name}",
                    substitute(annotation.expr),
                    expects_data=False,
                )
            )
    return out


def _rule_queries() -> list[ExportedQuery]:
    out: list[ExportedQuery] = []
    for group in rules.all_groups():
        for rule in group.rules:
            if isinstance(rule, rules.Record):
                out.append(ExportedQuery(f"rule:{rule.name}", rule.expr))
                continue
            out.append(ExportedQuery(f"rule:{rule.name}", rule.expr, expects_data=False))
            if rule.signal is not None:
                out.append(ExportedQuery(f"rule:{rule.name}/signal", rule.signal))
    return out


def exported_queries() -> list[ExportedQuery]:
    return _dashboard_queries() + _rule_queries()


def to_json(queries: list[ExportedQuery]) -> str:
    """The file form: one JSON array of {source, expr, expects_data}."""
    return json.dumps([dataclasses.asdict(q) for q in queries], indent=2)


if __name__ == "__main__":
    # `python -m infra.observability.queries > queries.json` for tools outside Python.
    print(to_json(exported_queries()))
