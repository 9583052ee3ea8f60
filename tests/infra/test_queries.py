"""exported_queries(): every dashboard and rule expression, directly evaluable by Prometheus."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from infra.observability import dashboards, grafana_model, rules
from infra.observability.queries import ExportedQuery, exported_queries, substitute


def _all_raw_exprs() -> set[str]:
    exprs = set()
    for board in dashboards.all_dashboards():
        model = grafana_model.render(board)
        exprs |= {t["expr"] for p in model["panels"] for t in p["targets"]}
        exprs |= {a["expr"] for a in model["annotations"]["list"]}
    for group in rules.render(rules.all_groups(), "https://x")["groups"]:
        exprs |= {r["expr"] for r in group["rules"]}
    return exprs


def test_every_dashboard_and_rule_expression_is_exported() -> None:
    exported = {q.expr for q in exported_queries()}
    missing = {e for e in _all_raw_exprs() if substitute(e) not in exported}
    assert missing == set()


def test_no_template_variables_survive() -> None:
    for query in exported_queries():
        assert "$" not in query.expr, query.source


def test_sources_are_unique_and_named() -> None:
    sources = [q.source for q in exported_queries()]
    assert len(sources) == len(set(sources))
    assert all(s.split(":", 1)[0] in {"dashboard", "annotation", "rule"} for s in sources)


def test_rate_interval_becomes_one_minute() -> None:
    assert substitute('rate(x{tenant=~"$tenant"}[$__rate_interval])') == 'rate(x{tenant=~".+"}[1m])'


def test_unknown_variable_is_refused() -> None:
    with pytest.raises(ValueError, match="unsubstituted"):
        substitute("rate(x[$window])")


def test_exported_query_is_frozen() -> None:
    query = ExportedQuery("rule:x", "up")
    with pytest.raises(AttributeError):
        query.expr = "down"  # type: ignore[misc]


def test_service_expressions_expect_data() -> None:
    by_source = {q.source: q for q in exported_queries()}
    assert by_source["rule:ImageServiceAvailabilityBudgetBurnPage/signal"].expects_data
    assert not by_source["rule:ImageServiceAvailabilityBudgetBurnPage"].expects_data
    # Signals never lean on recording rules: a plain Prometheus has none of them.
    for query in exported_queries():
        if query.expects_data:
            assert "tenant:image_service_" not in query.expr, query.source


def _promtool_parses(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    body = {
        "groups": [
            {
                "name": "parse",
                "rules": [{"record": f"parse:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "parse.yaml"
    path.write_text(yaml.safe_dump(body))
    return subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by setup")
def test_every_exported_query_parses_as_promql(tmp_path: Path) -> None:
    result = _promtool_parses([q.expr for q in exported_queries()], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by setup")
def test_promql_parse_check_can_fail(tmp_path: Path) -> None:
    result = _promtool_parses(["sum by (tenant (rate(x[1m]))"], tmp_path)
    assert result.returncode != 0


def test_file_form_round_trips() -> None:
    import json

    from infra.observability.queries import to_json

    queries = exported_queries()
    loaded = json.loads(to_json(queries))
    assert [ExportedQuery(**q) for q in loaded] == queries
