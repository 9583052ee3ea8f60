"""The console's functional core: ledger records -> typed deliveries -> page models and words."""

import dataclasses
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from delivery.cli import parser
from delivery.console import data, pages, svg
from image_contracts.metrics import REQUEST_DURATION_BUCKET, REQUESTS

FAILING_ROW: dict[str, Any] = {
    "metric": "error_ratio",
    "scope": "globex",
    "canary": {"n": 71.0, "value": 0.3},
    "baseline": {"n": 71.0, "value": 0.0},
    "effect": 0.3,
    "effect_unit": "pp",
    "interval": [0.2, 0.4],
    "p_value": 8.4e-08,
    "p_adjusted": 1.7e-07,
    "alpha": 0.0025,
    "result": "fail",
    "unit": "ratio",
    "note": "",
}


def row(**changes: Any) -> dict[str, Any]:
    return {**FAILING_ROW, **changes}


def records() -> list[dict[str, Any]]:
    common = {"schema_version": 1, "env": "staging", "stable_version": "v1", "commit": "c0ffee"}
    step = {
        "step": 0,
        "weight": 10,
        "started_at": "2026-11-29T10:00:10+00:00",
        "ended_at": "2026-11-29T10:00:40+00:00",
        "bake_seconds": 30,
        "extensions": 0,
        "metrics_error": "",
        "verdict": {
            "outcome": "fail",
            "score": 40.0,
            "interim": False,
            "reasons": ["critical metric(s) failed: error_ratio"],
            "metrics": [{"name": "error_ratio", "status": "fail", "critical": True}],
            "evidence": [
                row(scope="aggregate", effect=0.07),
                row(),
                row(scope="acme", result="pass"),
            ],
        },
    }
    return [
        {**common, "kind": "started", "delivery_id": "d1", "version": "v2",
         "started_at": "2026-11-29T10:00:00+00:00"},
        {**common, "kind": "step", "delivery_id": "d1", "version": "v2", **step},
        {**common, "kind": "finished", "delivery_id": "d1", "version": "v2",
         "started_at": "2026-11-29T10:00:00+00:00", "ended_at": "2026-11-29T10:00:41+00:00",
         "commit_time": "2026-11-29T09:00:00+00:00", "outcome": "aborted",
         "reason": "the judge failed the canary at 10%: ...", "steps": [step],
         "tenant_key": "sk-never-shown"},
        {**common, "kind": "started", "delivery_id": "d2", "version": "v3",
         "started_at": "2026-11-29T11:00:00+00:00"},
    ]  # fmt: skip


def test_records_fold_into_typed_deliveries_newest_first() -> None:
    running, aborted = data.parse_deliveries(records(), {"error_ratio": 0.0})
    assert (running.id, running.outcome, running.running) == ("d2", "running", True)
    assert (aborted.id, aborted.outcome, aborted.duration_seconds) == ("d1", "aborted", 41.0)
    (look,) = aborted.looks
    assert (look.weight, look.outcome, look.score) == (10, "fail", 40.0)
    assert [e.scope for e in look.evidence] == ["aggregate", "globex", "acme"]
    assert look.evidence[1].tolerance == 0.0  # from the policy: the record does not carry it
    assert "sk-never-shown" not in repr(aborted)  # unknown fields are never copied out


def evidence_of(evidence_row: dict[str, Any]) -> data.Evidence:
    """One evidence row as the console reads it from a finished record."""
    step = {**records()[1], "verdict": {"evidence": [evidence_row]}}
    finished = {**records()[2], "steps": [step]}
    (d,) = data.parse_deliveries([finished], {"error_ratio": 0.0})
    (e,) = d.looks[0].evidence
    return e


def test_a_failed_row_reads_as_a_sentence() -> None:
    e = evidence_of(row())
    words = pages.decision_words(e)
    assert words.startswith("Failed: 5xx error ratio for tenant globex is worse on the canary")
    assert "canary 30% vs baseline 0%" in words
    assert "+30.00 pp, beyond the tolerance of 0.00 pp" in words
    assert "p = 1.7e-07 after correction, at most 0.0025" in words


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"result": "insufficient", "canary": {"n": 3, "value": 0.0}},
            "Not judged: too little data",
        ),
        ({"result": "missing"}, "No data: 5xx error ratio for tenant globex"),
        ({"result": "pass", "p_adjusted": 0.4}, "Passed: no significant difference"),
        ({"result": "pass", "p_adjusted": 0.001}, "but stays within the tolerance"),
        ({"result": "pass", "note": "too few events to ever be significant"}, "too few events"),
    ],
)
def test_every_result_has_its_own_words(changes: dict[str, Any], expected: str) -> None:
    assert expected in pages.decision_words(evidence_of(row(**changes)))


def test_the_list_names_what_failed_and_filters() -> None:
    everything = data.parse_deliveries(records())
    dora = data.dora_figures(records(), "staging")
    page = pages.list_page(everything, "staging", dora)
    assert [r.outcome for r in page.rows] == ["running", "aborted"]
    assert page.rows[1].reason == (
        "the judge failed the canary at 10%: 5xx error ratio overall; 5xx error ratio for globex"
    )
    assert page.running
    only = pages.list_page(everything, "staging", dora, outcome="aborted")
    assert [r.id for r in only.rows] == ["d1"]
    assert pages.list_page(everything, "prod", dora).rows == ()
    assert (dora.aborted, len(dora.over_time)) == (1, 1)
    cards = dict(page.cards)  # one delivery is no rate (ADR 112): counts and the window instead
    assert cards["change-fail rate"] == "1 of 1 failed"
    assert cards["deployment frequency"].startswith("0 promotions in ")


def test_summary_markdown_comes_from_the_same_data() -> None:
    d = data.parse_deliveries(records())[1]
    text = pages.markdown_summary(d, "http://127.0.0.1:8470/deliveries/d1")
    assert text.startswith("## Delivery of `v2` to `staging`: **ABORTED**")
    assert "| error_ratio | globex | 30% | 0% | +30.00 pp | 1.7e-07 | fail |" in text
    assert "acme" not in text  # passing tenants are summarised away, as in the CLI's table
    assert text.rstrip().endswith("(http://127.0.0.1:8470/deliveries/d1)")


def test_window_queries_use_the_contract_and_refuse_hostile_versions() -> None:
    d = data.parse_deliveries(records())[1]
    specs = (data.MetricSpec("latency", "latency", 0.5, 0.05, True),)
    q = data.window_queries(d, specs, "2000ms")
    assert REQUESTS in q["requests"]
    assert 'track="canary",version="v2"' in q["requests"]
    assert 'track="baseline",version="v1"' in q["requests"]
    assert 'code=~"5.."' in q["errors"]
    assert REQUEST_DURATION_BUCKET in q["latency:0.5:tenant"]
    (hostile,) = data.parse_deliveries([{**records()[0], "version": 'v2"} or vector(1) #'}])
    with pytest.raises(ValueError, match="refusing"):
        data.window_queries(hostile, specs, "2s")


def test_query_results_fold_into_ratios_per_tenant_and_overall() -> None:
    def s(track: str, tenant: str, *values: float) -> data.Series:
        labels = (("tenant", tenant), ("track", track))
        return data.Series(labels, tuple((float(i), v) for i, v in enumerate(values)))

    results = {
        "requests": [s("canary", "a", 10, 10), s("canary", "b", 30, 0)],
        "errors": [s("canary", "a", 5, 0)],
    }
    spec = data.MetricSpec("error_ratio", "error_ratio", 0.5, 0.0, True)
    folded = data.fold_window(results, [spec])
    assert folded[("error_ratio", "a", "canary")] == ((0.0, 0.5), (1.0, 0.0))
    assert folded[("error_ratio", "aggregate", "canary")] == ((0.0, 0.125), (1.0, 0.0))
    assert folded[("error_ratio", "b", "canary")] == ((0.0, 0.0),)  # no requests, no point


def test_panel_promql_fills_grafana_variables() -> None:
    expr = 'sum by (tenant) (rate(m{tenant=~"$tenant"}[$__rate_interval]))'
    assert data.runnable(expr, ("tenant",), "30s") == 'sum by (tenant) (rate(m{tenant=~".+"}[30s]))'
    with pytest.raises(ValueError, match="unknown template variable"):
        data.runnable('m{x="$other"}', ("tenant",), "30s")
    boards = data.load_dashboards()
    assert {b.uid for b in boards} >= {"image-service-golden", "image-service-canary"}
    for board in boards:
        for panel in board.panels:
            for target in panel.targets:
                assert "$" not in data.runnable(target.expr, board.variables, "1m")


def test_charts_escape_text_and_round_their_axis() -> None:
    chart = svg.line_chart(
        "<script>alert(1)</script>",
        [svg.Line("a<b", ((0.0, 0.2), (1.0, 0.4)), "canary")],
        unit="ratio",
        x_range=(0.0, 1.0),
    )
    assert "<script>" not in chart
    assert "&lt;script&gt;" in chart
    assert 'data-points="2"' in chart
    assert ">50%</text>" in chart  # 0.4 * 1.05 rounds up to a 50% axis
    assert [svg.nice_ceiling(v) for v in (0.42, 3.0, 7.0, 0.0)] == [0.5, 5.0, 10.0, 1.0]


def test_deliver_console_binds_loopback_by_default() -> None:
    args = parser().parse_args(["console"])
    assert (args.host, args.port) == ("127.0.0.1", 8470)


def test_dashboard_json_keeps_only_the_grafana_slice_we_read(tmp_path: Path) -> None:
    doc = [
        {
            "uid": "u",
            "title": "T",
            "templating": {"list": [{"name": "tenant"}]},
            "panels": [
                {
                    "title": "P",
                    "gridPos": {"w": 24},
                    "fieldConfig": {"defaults": {"unit": "s"}},
                    "targets": [{"expr": "up", "legendFormat": "{{job}}"}],
                }
            ],
        }
    ]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    (board,) = data.load_dashboards(path)
    assert board.variables == ("tenant",)
    assert board.panels[0] == data.PanelSpec("P", "s", 24, (data.PanelTarget("up", "{{job}}"),))
    series = data.Series((("job", "api"),), ())
    assert data.legend("{{job}}", series) == "api"


def test_docs_show_screenshots_that_exist() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    shown = re.findall(r"\((img/console/[\w-]+\.png)\)", (docs / "console.md").read_text())
    assert len(shown) == 4, shown
    for name in shown:
        assert (docs / name).stat().st_size > 10_000, name


def test_every_page_renders_a_real_ledger_from_the_e2e_suite(tmp_path: Path) -> None:
    """Real ledger lines (written by `deliver run` in the e2e suite): promoted with extensions,
    aborted by 5xx, by latency, by one tenant, by a dead Prometheus, recovered after a kill,
    and a refused redeploy."""
    from delivery.console.app import create_app
    from delivery.ledger import FileLedger
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        # Starlette 1.x prefers the httpx2 fork for its TestClient; httpx works the same here.
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    ledger = FileLedger(Path(__file__).with_name("fixtures") / "e2e-ledger.jsonl")
    sources = data.Sources(ledger, None, (), 2.0)
    with TestClient(create_app(sources, default_env="e2e")) as client:
        listing = client.get("/env/e2e")
        assert listing.status_code == 200
        found = re.findall(r'href="/deliveries/([^"]+)"', listing.text)
        assert len(found) == 12
        pages_by_version = {}
        for delivery_id in found:
            page = client.get(f"/deliveries/{delivery_id}")
            assert page.status_code == 200, delivery_id
            version = re.search(r"<h1>([\w.-]+) ", page.text)
            assert version is not None
            pages_by_version[version.group(1)] = page.text
    assert "5xx error ratio — tenant globex" in pages_by_version["bad-globex"]
    assert "median latency — all tenants" in pages_by_version["slow"]
    assert "metrics unavailable: Prometheus at" in pages_by_version["good-2"]
    assert "the ledger&#39;s value at each judge look" in pages_by_version["good-1"]
    good = pages_by_version["good-1"]
    assert good.count(' data-step="') == 6  # steps with their extensions, one look each
    assert "<td>2 (+2)</td>" in good  # step 2 after its second extension
    assert "Promoted: good-1 is now stable." in good


def test_local_env_console_finds_the_local_prometheus(tmp_path: Path) -> None:
    """`deliver console --env local` reads the local environment's Prometheus from its state."""
    from delivery.config import load
    from delivery.console.command import _prometheus_url
    from delivery.local_env import LocalEnvironment
    from delivery.procs import Proc

    repo = Path(__file__).resolve().parents[2]
    cfg = load("local", repo / "environments")
    assert cfg.local is not None
    local = dataclasses.replace(cfg.local, state_dir=str(tmp_path / "state"))
    cfg = dataclasses.replace(cfg, local=local)
    args = parser().parse_args(["console"])
    assert _prometheus_url(args, repo, cfg) == ""  # not up: no Prometheus, pages still work
    prometheus = Proc("prometheus", 1, 1, 39123, "log")
    LocalEnvironment(repo, local, "local").state.update(
        lambda state: dataclasses.replace(state, prometheus=prometheus)
    )
    assert _prometheus_url(args, repo, cfg) == "http://127.0.0.1:39123"
    explicit = parser().parse_args(["console", "--prometheus", "http://thanos:9090"])
    assert _prometheus_url(explicit, repo, cfg) == "http://thanos:9090"


def test_a_running_delivery_names_the_step_baking_now() -> None:
    started = {
        **records()[3],
        "planned": [{"weight": 10, "bake_seconds": 6}, {"weight": 50, "bake_seconds": 6}],
    }
    step = {**records()[1], "delivery_id": "d2"}
    words = [
        pages.outcome_words(data.parse_deliveries(recs)[0])
        for recs in (
            [started],
            [started, {**step, "verdict": {**step["verdict"], "outcome": "inconclusive"}}],
            [started, {**step, "verdict": {**step["verdict"], "outcome": "pass"}}],
            [started, {**step, "step": 1, "verdict": {"outcome": "pass"}}],
        )
    ]
    assert words == [
        "Running: step 1 of 2 is baking at 10%.",
        "Running: step 1 of 2 is baking at 10%.",  # extended after an inconclusive look
        "Running: step 2 of 2 is baking at 50%.",
        "Running: the last step has been judged; promoting or aborting.",
    ]
