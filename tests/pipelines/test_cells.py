"""Cells as code: the cells file, wave plans, tenant placement and moving a tenant."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from delivery.cells.__main__ import main as cells_main
from delivery.cells.placement import (
    LoadBasis,
    MoveStepKind,
    TenantLoad,
    check_placement,
    gate_placement_change,
    plan_move,
    plan_sync,
    tenant_loads,
    validate_placement,
    verify_copy,
)
from delivery.cells.schema import CellsError, load_cells, parse_cells
from image_contracts.tenants import parse_text

ENVS = ("local", "dev", "staging", "prod")


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema_version": 1,
        "environment": "test",
        "default_tenant_rps": 10,
        "cells": [
            {"name": "a", "risk": "low", "max_tenants": 2, "max_rps": 100},
            {"name": "b", "risk": "medium", "max_tenants": 2, "max_rps": 100},
            {"name": "c", "risk": "high", "max_tenants": 2, "max_rps": 100},
            {"name": "d", "risk": "low", "max_tenants": 2, "max_rps": 100},
        ],
        "waves": {
            "default": "p",
            "plans": {"p": [{"count": 1, "bake_seconds": 60}, {"rest": True, "bake_seconds": 0}]},
        },
    }
    base.update(overrides)
    return base


def plans(waves: list[dict[str, Any]]) -> dict[str, Any]:
    return {"default": "p", "plans": {"p": waves}}


@pytest.mark.parametrize("env", ENVS)
def test_every_environment_has_valid_cells_and_a_default_plan(env: str, repo_root: Path) -> None:
    catalog = load_cells(env, repo_root / "environments")
    plan = catalog.plan()
    assert sorted(plan.cells) == sorted(catalog.names)
    assert len(plan.waves[0].cells) == 1
    assert catalog.cell(plan.waves[0].cells[0]).risk == "low"


def test_counted_waves_take_cells_lowest_risk_first() -> None:
    catalog = parse_cells(doc(), "t")
    # low (a, d by name), then medium b, then high c
    assert [w.cells for w in catalog.plan().waves] == [("a",), ("d", "b", "c")]
    # shares are cumulative: after the wave, that share of all cells runs the version
    shares = parse_cells(
        doc(
            waves=plans(
                [
                    {"count": 1, "bake_seconds": 1},
                    {"share": 0.75, "bake_seconds": 1},
                    {"rest": True, "bake_seconds": 0},
                ]
            )
        ),
        "t",
    )
    assert [w.cells for w in shares.plan().waves] == [("a",), ("d", "b"), ("c",)]
    small = parse_cells(
        doc(
            waves=plans(
                [
                    {"count": 1, "bake_seconds": 1},
                    {"share": 0.1, "bake_seconds": 1},
                    {"rest": True, "bake_seconds": 0},
                ]
            )
        ),
        "t",
    )
    # 10% of 4 cells is already reached by wave 0: the wave still takes one cell
    assert [w.cells for w in small.plan().waves] == [("a",), ("d",), ("b", "c")]


@pytest.mark.parametrize(
    ("waves", "message"),
    [
        (
            [{"cells": ["b"], "bake_seconds": 1}, {"rest": True, "bake_seconds": 0}],
            "wave 0 must be exactly one low-risk cell",
        ),
        (
            [{"cells": ["a", "d"], "bake_seconds": 1}, {"rest": True, "bake_seconds": 0}],
            "wave 0 must be exactly one low-risk cell",
        ),
        ([{"count": 1, "bake_seconds": 1}, {"cells": ["b"], "bake_seconds": 0}], "are in no wave"),
        (
            [
                {"cells": ["a"], "bake_seconds": 1},
                {"cells": ["a", "b", "c", "d"], "bake_seconds": 0},
            ],
            "more than one wave",
        ),
        (
            [{"cells": ["a"], "bake_seconds": 1}, {"cells": ["zz"], "bake_seconds": 0}],
            "unknown cell",
        ),
        (
            [{"rest": True, "bake_seconds": 0}, {"count": 1, "bake_seconds": 0}],
            "must be the last wave",
        ),
        ([{"count": 1, "bake_seconds": 1}, {"count": 9, "bake_seconds": 0}], "only 3 left"),
        ([{"count": 1, "cells": ["a"], "bake_seconds": 1}], "exactly one of"),
        ([{"count": 1, "bake_seconds": -1}], "bake_seconds: must be >= 0"),
        ([{"count": 1}], "missing required key 'bake_seconds'"),
        ([{"count": 1, "bake_seconds": 1, "wait": 2}], "unknown key(s) ['wait']"),
    ],
)
def test_bad_wave_plans_are_refused_with_the_reason(
    waves: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(CellsError) as err:
        parse_cells(doc(waves=plans(waves)), "cells.test.yaml")
    assert message in str(err.value)
    assert "cells.test.yaml" in str(err.value)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ({"name": "A_1", "risk": "low", "max_tenants": 1, "max_rps": 1}, "must be 1-32"),
        ({"name": "x", "risk": "none", "max_tenants": 1, "max_rps": 1}, "risk: expected one of"),
        ({"name": "x", "risk": "low", "max_tenants": 1.5, "max_rps": 1}, "expected an integer"),
        ({"name": "x", "risk": "low", "max_tenants": True, "max_rps": 1}, "expected an integer"),
        ({"name": "x", "risk": "low", "max_tenants": 1, "max_rps": 0}, "must be > 0"),
        ({"name": "x", "risk": "low", "max_tenants": 1, "max_rps": 1, "az": 1}, "unknown key"),
        ({"name": "a", "risk": "low", "max_tenants": 1, "max_rps": 1}, "duplicate cell name"),
    ],
)
def test_bad_cells_are_refused(cell: dict[str, Any], message: str) -> None:
    data = doc()
    data["cells"] = [*data["cells"], cell]
    with pytest.raises(CellsError, match="cells") as err:
        parse_cells(data, "cells.test.yaml")
    assert message in str(err.value)


def test_storage_prefix_must_scope_each_cell() -> None:
    assert parse_cells(doc(), "t").prefix("b") == "cells/b/"
    for prefix in ("shared/", "cells/{cell}", "/cells/{cell}/", "../{cell}/"):
        with pytest.raises(CellsError, match=r"storage\.prefix"):
            parse_cells(doc(storage={"prefix": prefix}), "t")


def test_load_names_the_known_environments(tmp_path: Path, repo_root: Path) -> None:
    with pytest.raises(CellsError, match=r"known: .*'prod'"):
        load_cells("nope", repo_root / "environments")
    (tmp_path / "cells.x.yaml").write_text("schema_version: 1\nenvironment: y\n")
    with pytest.raises(CellsError, match="cells"):
        load_cells("x", tmp_path)


# --- placement -----------------------------------------------------------------------------------

CATALOG = parse_cells(doc(), "cells.test.yaml")


def loads(**cells: str | None) -> list[TenantLoad]:
    return [TenantLoad(t, c, declared_rps=10.0) for t, c in cells.items()]


def test_a_valid_placement_reports_usage_per_cell() -> None:
    report = check_placement(loads(t1="a", t2="a", t3="b"), CATALOG)
    usage = {u.cell: u for u in report.usage}
    assert usage["a"].tenants == ("t1", "t2")
    assert usage["a"].rps == 20.0
    assert usage["c"].tenants == ()
    assert usage["c"].tenant_share == 0
    assert report.cell_of() == {"t1": "a", "t2": "a", "t3": "b"}


def test_every_problem_is_reported_at_once() -> None:
    report = validate_placement(
        [*loads(t1="a", t2="a", t3="a", t4=None, t5="zz"), TenantLoad("t1", "b")], CATALOG
    )
    text = "\n".join(report.problems)
    assert not report.ok
    assert "listed more than once: ['t1']" in text
    assert "in no cell (set `cell`): ['t4']" in text
    assert "tenant t5: unknown cell 'zz'" in text
    assert "cell a: 3 tenants, capacity 2" in text
    with pytest.raises(CellsError, match="placement for test is invalid"):
        check_placement(loads(t4=None), CATALOG)


def test_rate_capacity_uses_observed_then_declared_then_default() -> None:
    heavy = TenantLoad("big", "a", declared_rps=500.0, observed_rps=60.0)
    assert heavy.load(10.0) == (60.0, LoadBasis.OBSERVED)
    assert TenantLoad("x", "a", declared_rps=7.0).load(10.0) == (7.0, LoadBasis.DECLARED)
    assert TenantLoad("x", "a").load(10.0) == (10.0, LoadBasis.DEFAULT)
    assert validate_placement([heavy, TenantLoad("y", "a", 30.0)], CATALOG).ok  # 90 <= 100
    over = validate_placement([heavy, TenantLoad("y", "a", 50.0)], CATALOG)
    assert over.problems == (
        "cell a: 110 req/s, capacity 100 req/s (1 tenant(s) at declared or default rates)",
    )


@dataclass(frozen=True)
class Entry:
    id: str
    cell: str | None
    requests_per_second: float | None = None


def test_tenant_loads_read_entries_and_refuse_unknown_observations() -> None:
    got = tenant_loads((e for e in [Entry("t1", "a", 5.0), Entry("t2", None)]), {"t1": 3.0})
    assert got == (TenantLoad("t1", "a", 5.0, 3.0), TenantLoad("t2", None, None, None))
    with pytest.raises(CellsError, match=r"not in the tenants file: \['ghost'\]"):
        tenant_loads([Entry("t1", "a")], {"ghost": 1.0})


def test_a_placement_change_moves_at_most_one_tenant() -> None:
    old = {"t1": "a", "t2": "a", "t3": "b"}
    moves = gate_placement_change(old, loads(t1="b", t2="a", t3="b", t4="c"), CATALOG)
    assert [(m.tenant, m.source, m.target) for m in moves] == [("t1", "a", "b")]
    with pytest.raises(CellsError, match=r"2 tenants change cell .*at most 1"):
        gate_placement_change(old, loads(t1="c", t2="c", t3="b"), CATALOG)
    with pytest.raises(CellsError, match="capacity"):
        gate_placement_change(old, loads(t1="b", t2="b", t3="b"), CATALOG)


def test_move_plan_keeps_the_source_until_the_copy_is_verified() -> None:
    plan = plan_move(loads(t1="a", t2="b"), CATALOG, "t1", "c", retain_days=3)
    kinds = [s.kind for s in plan.steps]
    assert plan.source_prefix == "cells/a/t1/"
    assert plan.target_prefix == "cells/c/t1/"
    # Copy before the route flips; sync and verify after the source drained; purge comes last.
    assert kinds.index(MoveStepKind.COPY) < kinds.index(MoveStepKind.ROUTE)
    assert kinds.index(MoveStepKind.DRAIN) < kinds.index(MoveStepKind.SYNC)
    assert (
        kinds.index(MoveStepKind.VERIFY)
        < kinds.index(MoveStepKind.RETAIN)
        < kinds.index(MoveStepKind.PURGE)
    )
    assert "3 days" in plan.steps[kinds.index(MoveStepKind.RETAIN)].detail


@pytest.mark.parametrize(
    ("tenant", "target", "message"),
    [
        ("ghost", "b", "no tenant 'ghost'"),
        ("t1", "a", "already in cell a"),
        ("t1", "zz", "unknown cell 'zz'"),
        ("t3", "a", "in no cell yet"),
        ("t1", "b", "cell b: 3 tenants, capacity 2"),
    ],
)
def test_moves_that_cannot_work_are_refused(tenant: str, target: str, message: str) -> None:
    with pytest.raises(CellsError) as err:
        plan_move(loads(t1="a", t2="b", t4="b", t3=None), CATALOG, tenant, target)
    assert message in str(err.value)


def test_sync_copies_writes_and_replays_deletes_made_during_the_copy() -> None:
    manifest = {"o/1": "e1", "o/2": "e2", "o/3": "e3"}  # what the first copy saw
    source = {"o/1": "e1", "o/3": "e3b", "o/4": "e4"}  # 2 deleted, 3 replaced, 4 new
    target = {"o/1": "e1", "o/2": "e2", "o/3": "e3", "o/9": "e9"}  # 9 written after the switch
    sync = plan_sync(manifest, source, target)
    assert sync.copy == ("o/3", "o/4")
    assert sync.delete == ("o/2",)
    after = {k: v for k, v in target.items() if k not in sync.delete} | {
        k: source[k] for k in sync.copy
    }
    assert verify_copy(source, after) == ()
    assert after["o/9"] == "e9"  # nothing written to the new cell is lost
    assert verify_copy(source, target) == ("o/3", "o/4")


def test_placement_reads_the_tenants_file_contract() -> None:
    head = 'api_key_sha256 = ["' + "0" * 64 + '"]\nallow_unsigned_reads = true\n'
    text = (
        f'[tenants.t1]\n{head}cell = "a"\nrequests_per_second = 60\n'
        f'[tenants.t2]\n{head}cell = "a"\n'
        f"[tenants.t3]\n{head}"
    )
    entries = parse_text(text).values()
    report = validate_placement(tenant_loads(entries, {"t2": 5.0}), CATALOG)
    assert report.problems == ("tenant(s) in no cell (set `cell`): ['t3']",)
    assert next(u for u in report.usage if u.cell == "a").rps == 65.0


def test_the_cells_command_checks_placement_and_plans_moves(
    tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = 'api_key_sha256 = ["' + "0" * 64 + '"]\nallow_unsigned_reads = true\n'
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f'[tenants.acme]\n{head}cell = "cell-a"\n[tenants.globex]\n{head}cell = "cell-b"\n'
    )
    envs = ["--env", "local", "--environments", str(repo_root / "environments")]
    assert cells_main(["plan", *envs]) == 0
    assert "wave 0: cell-a" in capsys.readouterr().out
    assert cells_main(["check", *envs, "--tenants", str(tenants)]) == 0
    assert (
        cells_main(["move", *envs, "--tenants", str(tenants), "--tenant", "acme", "--to", "cell-b"])
        == 0
    )
    out = capsys.readouterr().out
    assert "move acme: cell-a -> cell-b" in out
    assert "copy cells/cell-a/acme/ -> cells/cell-b/acme/" in out
    tenants.write_text(tenants.read_text() + f'[tenants.initech]\n{head}cell = "nowhere"\n')
    assert cells_main(["check", *envs, "--tenants", str(tenants)]) == 1
    assert "unknown cell 'nowhere'" in capsys.readouterr().err
    observed = tmp_path / "rates.json"
    observed.write_text('{"acme": "fast"}')
    assert cells_main(["check", *envs, "--tenants", str(tenants), "--observed", str(observed)]) == 1
    assert "tenant -> req/s" in capsys.readouterr().err
