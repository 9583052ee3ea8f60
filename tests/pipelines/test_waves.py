"""Rollouts across waves of cells: the state machine and its stop rule, the between-waves natural
experiment, version skew and the per-cell ledger records."""

import json
import random

import numpy as np
import pytest
from delivery.cells.experiment import CellCounts, cell_judge_policy, check_alpha, judge_experiment
from delivery.cells.records import RolloutRecord, dora_per_cell
from delivery.cells.rollout import (
    ActionKind,
    CanaryRemoved,
    CellFailed,
    CellPhase,
    CellPromoted,
    CellStarted,
    CellStepPassed,
    Event,
    ExperimentJudged,
    Halted,
    Rollout,
    StopKind,
    apply,
    fix_forward_plan,
    next_action,
    replay,
    start_rollout,
)
from delivery.cells.schema import CellsError, Wave, WavePlan
from delivery.cells.skew import CellVersions, render_skew, version_skew
from hypothesis import given, settings
from hypothesis import strategies as st

PLAN = WavePlan(
    "doubling",
    (Wave(("a",), 100.0), Wave(("b", "c"), 100.0), Wave(("d", "e", "f"), 0.0)),
)
CELLS = PLAN.cells
OLD = {c: "v1" for c in CELLS}


def fresh(at: float = 0.0) -> Rollout:
    return start_rollout("v2", PLAN, OLD, at)


def promote(cell: str, start: float, end: float) -> list[Event]:
    return [CellStarted(cell, start), CellStepPassed(cell, 1, start + 1), CellPromoted(cell, end)]


def test_a_clean_rollout_goes_wave_by_wave_with_bakes_and_checks() -> None:
    r = fresh()
    assert next_action(r, 0) == next_action(r, 0)
    first = next_action(r, 0)
    assert (first.kind, first.cells) == (ActionKind.START, ("a",))
    r = replay(r, promote("a", 0, 50))
    bake = next_action(r, 60)
    assert (bake.kind, bake.until, bake.wave) == (ActionKind.BAKE, 150.0, 0)
    with pytest.raises(CellsError, match="may not start now"):
        apply(r, CellStarted("b", 60))
    judge = next_action(r, 150)
    assert judge.kind is ActionKind.JUDGE
    assert judge.cells == ("a",)
    assert judge.control == ("b", "c", "d", "e", "f")
    r = apply(r, ExperimentJudged(0, False, "fine", 151))
    start = next_action(r, 151)
    assert (start.kind, start.cells) == (ActionKind.START, ("b", "c"))
    r = apply(r, CellStarted("b", 152))
    # c may still start: its wave's gate has passed
    assert next_action(r, 152).cells == ("c",)
    r = apply(r, CellStarted("c", 152))
    assert next_action(r, 153).kind is ActionKind.WATCH
    r = replay(r, [CellPromoted("b", 200), CellPromoted("c", 210)])
    assert next_action(r, 300).until == 310.0
    r = apply(r, ExperimentJudged(1, False, "fine", 311))
    for cell in ("d", "e", "f"):
        r = replay(r, promote(cell, 320, 400))
    assert r.status == "complete"
    assert next_action(r, 401).kind is ActionKind.DONE
    assert apply(r, Halted("too late", 402)) == r
    assert r.in_phase(CellPhase.PROMOTED) == CELLS


def test_a_failure_in_any_cell_stops_the_fleet_and_quarantines_promoted_cells() -> None:
    r = replay(fresh(), [*promote("a", 0, 50), ExperimentJudged(0, False, "ok", 150)])
    r = replay(r, [CellStarted("b", 160), CellStarted("c", 160), CellStepPassed("c", 1, 170)])
    r = apply(r, CellFailed("b", "5xx +3pp for tenant acme", 180))
    assert r.status == "stopped"
    assert r.quarantined
    phases = {c.cell: c.phase for c in r.cells}
    assert phases == {
        "a": CellPhase.QUARANTINED,
        "b": CellPhase.ABORTED,
        "c": CellPhase.ABORTED,  # its running canary is aborted too
        "d": CellPhase.SKIPPED,
        "e": CellPhase.SKIPPED,
        "f": CellPhase.SKIPPED,
    }
    assert r.state("c").reason.startswith("fleet stop: b: 5xx")
    assert r.stop is not None
    assert (r.stop.kind, r.stop.cell, r.stop.wave) == (StopKind.CELL_FAILED, "b", 1)
    assert "quarantined" in r.stop.rule
    assert "get the fix first: a" in r.stop.rule
    # no further cell starts, whatever is reported next
    with pytest.raises(CellsError, match="stopped"):
        apply(r, CellStarted("d", 500))
    assert apply(r, CellFailed("c", "late report", 190)) == r  # the first stop stays on record


def test_aborted_canaries_are_removed_before_the_stop_is_done() -> None:
    r = replay(fresh(), [CellStarted("a", 0), CellFailed("a", "judge failed", 10)])
    assert r.stop is not None
    assert "no cell had promoted it" in r.stop.rule
    action = next_action(r, 11)
    assert (action.kind, action.cells) == (ActionKind.REMOVE, ("a",))
    r = apply(r, CanaryRemoved("a", 12))
    assert next_action(r, 13).kind is ActionKind.DONE
    with pytest.raises(CellsError, match="not aborted"):
        apply(r, CanaryRemoved("b", 14))


def test_a_worse_natural_experiment_stops_the_rollout() -> None:
    r = replay(fresh(), [*promote("a", 0, 50), ExperimentJudged(0, True, "5xx +40%", 150)])
    assert r.stop is not None
    assert r.stop.kind is StopKind.EXPERIMENT
    assert r.stop.cell is None
    assert r.state("a").phase is CellPhase.QUARANTINED
    assert r.in_phase(CellPhase.SKIPPED) == ("b", "c", "d", "e", "f")


def test_an_operator_halt_stops_without_quarantine() -> None:
    r = replay(fresh(), [*promote("a", 0, 50), Halted("change freeze", 60)])
    assert r.status == "stopped"
    assert not r.quarantined
    assert r.state("a").phase is CellPhase.PROMOTED


def test_resume_replays_to_the_same_state_and_ignores_repeats() -> None:
    events: list[Event] = [
        *promote("a", 0, 50),
        ExperimentJudged(0, False, "ok", 150),
        CellStarted("b", 160),
        CellStepPassed("b", 1, 170),
    ]
    once = replay(fresh(), events)
    # a deliverer killed after recording reports the same outcomes again
    twice = replay(once, [CellStarted("b", 160), CellStepPassed("b", 1, 170), *promote("a", 0, 50)])
    assert twice == once
    with pytest.raises(CellsError, match="passed step 3 after 1"):
        apply(once, CellStepPassed("b", 3, 180))
    with pytest.raises(CellsError, match="cannot promote"):
        apply(once, CellPromoted("d", 180))
    with pytest.raises(CellsError, match="only a canary can fail"):
        apply(once, CellFailed("e", "x", 180))


def test_start_refuses_quarantined_versions_and_mismatched_plans() -> None:
    with pytest.raises(CellsError, match="quarantined"):
        start_rollout("v2", PLAN, OLD, 0, quarantined_versions=["v2"])
    with pytest.raises(CellsError, match="covers"):
        start_rollout("v2", PLAN, {"a": "v1"}, 0)
    partly = start_rollout("v2", PLAN, {**OLD, "a": "v2"}, 0)
    assert partly.state("a").phase is CellPhase.SKIPPED
    assert next_action(partly, 0).cells == ("b", "c")  # wave 0 needs nothing: it is on v2


def test_fix_forward_goes_to_the_quarantined_cells_first() -> None:
    plan = fix_forward_plan(PLAN, ["a", "c"])
    assert [w.cells for w in plan.waves] == [("a",), ("c",), ("b",), ("d", "e", "f")]
    assert sorted(plan.cells) == sorted(CELLS)
    with pytest.raises(CellsError, match="not in plan"):
        fix_forward_plan(PLAN, ["zz"])


# --- natural experiment --------------------------------------------------------------------------


def counts(
    rng: np.random.Generator, cells: list[str], base: np.ndarray, factor: float, n: float = 2e5
) -> list[CellCounts]:
    rows = []
    for cell, p in zip(cells, base, strict=True):
        rows.append(
            CellCounts(
                cell, n, float(rng.binomial(int(n), p)), n, float(rng.binomial(int(n), p * factor))
            )
        )
    return rows


def test_experiment_sees_a_worse_version_despite_different_cells() -> None:
    rng = np.random.default_rng(7)
    new_cells, old_cells = ["a", "b"], [f"o{i}" for i in range(8)]
    # cells' own error rates differ 10x: comparing groups directly would blame the mix
    base_new, base_old = np.array([0.004, 0.003]), rng.uniform(0.0003, 0.003, 8)
    worse = judge_experiment(
        0,
        {"5xx": counts(rng, new_cells, base_new, 1.5)},
        {"5xx": counts(rng, old_cells, base_old, 1.0)},
        alpha=0.005,
        tolerance={"5xx": 0.1},
    )
    assert worse.worse
    assert worse.metrics[0].effect > 0.3
    assert "WORSE" in worse.summary
    same = judge_experiment(
        0,
        {"5xx": counts(rng, new_cells, base_new, 1.0)},
        {"5xx": counts(rng, old_cells, base_old, 1.0)},
        alpha=0.005,
    )
    assert not same.worse


def test_experiment_false_stops_stay_within_alpha_under_cell_noise() -> None:
    """A/A with cells whose error rates drift between windows more than counting noise: the
    random-effects variance keeps false stops near alpha (fixed effects alone would not)."""
    rng = np.random.default_rng(11)
    alpha, stops = 0.05, 0
    for _ in range(300):
        rows = []
        for i in range(12):
            p0 = rng.uniform(0.0005, 0.002)
            p1 = p0 * float(np.exp(rng.normal(0, 0.25)))  # each cell drifts on its own
            n = 1e5
            rows.append(
                CellCounts(f"c{i}", n, rng.binomial(int(n), p0), n, rng.binomial(int(n), p1))
            )
        v = judge_experiment(0, {"5xx": rows[:3]}, {"5xx": rows[3:]}, alpha=alpha)
        stops += v.worse
    assert stops / 300 < 2 * alpha


def test_experiment_needs_both_sides_and_clean_counts() -> None:
    row = CellCounts("a", 100, 1, 100, 2)
    empty = judge_experiment(0, {"5xx": [row]}, {"5xx": []}, alpha=0.01)
    assert not empty.worse
    assert empty.insufficient == ("5xx",)
    with pytest.raises(CellsError, match="more bad events than requests"):
        judge_experiment(0, {"5xx": [CellCounts("b", 1, 2, 1, 0)]}, {"5xx": [row]}, alpha=0.01)
    with pytest.raises(CellsError, match="on both sides"):
        judge_experiment(0, {"5xx": [row]}, {"5xx": [row]}, alpha=0.01)
    with pytest.raises(CellsError, match="alpha"):
        judge_experiment(0, {"5xx": [row]}, {"5xx": []}, alpha=0)
    assert check_alpha(0.01, PLAN) == pytest.approx(0.005)


# --- skew and records ----------------------------------------------------------------------------


def test_skew_shows_what_runs_where_and_who_lags() -> None:
    view = version_skew(
        [
            CellVersions("a", "v3"),
            CellVersions("b", "v2", canary="v3", canary_weight=10),
            CellVersions("c", "v1"),
        ],
        release_order=["v1", "v2", "v3"],
        quarantined_versions=["v3"],
    )
    assert view.newest == "v3"
    assert view.lagging == ("b", "c")
    assert [r.behind for r in view.rows] == [0, 1, 2]
    assert dict(view.by_version) == {"v3": ("a",), "v2": ("b",), "v1": ("c",)}
    assert view.rows[0].quarantined
    text = render_skew(view)
    assert "v3 @10%" in text
    assert "quarantined" in text
    with pytest.raises(CellsError, match="not in the release order"):
        version_skew([CellVersions("a", "v9")], ["v1"])


def test_rollout_record_round_trips_through_json() -> None:
    r = replay(fresh(1_700_000_000), [*promote("a", 1_700_000_000, 1_700_000_050)])
    r = apply(r, ExperimentJudged(0, False, "ok", 1_700_000_200))
    r = replay(r, [CellStarted("b", 1_700_000_210), CellFailed("b", "judge", 1_700_000_300)])
    record = RolloutRecord.from_rollout(r)
    assert record.status == "stopped"
    assert record.outcomes()["a"] is CellPhase.QUARANTINED
    assert record.stop is not None
    assert record.stop.at == "2023-11-14T22:18:20+00:00"
    text = json.dumps(record.to_json())
    assert RolloutRecord.from_json(json.loads(text)) == record


def test_each_cell_gets_its_share_of_the_false_fail_budget() -> None:
    judge = {"confidence": 0.99, "min_requests": 500}
    per_cell = cell_judge_policy(judge, 50)
    assert per_cell == {"confidence": pytest.approx(0.9998), "min_requests": 500}
    assert cell_judge_policy({}, 2)["confidence"] == pytest.approx(0.995)  # the judge's default
    with pytest.raises(CellsError, match="at least one cell"):
        cell_judge_policy(judge, 0)


def test_dora_per_cell_counts_promotions_quarantines_and_own_failures() -> None:
    clean = replay(fresh(), [*promote("a", 0, 50), ExperimentJudged(0, False, "ok", 150)])
    for cell in ("b", "c"):
        clean = replay(clean, promote(cell, 160, 200))
    clean = apply(clean, ExperimentJudged(1, False, "ok", 400))
    for cell in ("d", "e", "f"):
        clean = replay(clean, promote(cell, 410, 500))
    bad = replay(
        start_rollout("v3", PLAN, {c: "v2" for c in CELLS}, 1000),
        [*promote("a", 1000, 1050), ExperimentJudged(0, False, "ok", 1200)],
    )
    bad = replay(bad, [CellStarted("b", 1210), CellStarted("c", 1210), CellFailed("c", "x", 1300)])
    figures = {
        d.cell: d for d in dora_per_cell(RolloutRecord.from_rollout(r) for r in (clean, bad))
    }
    assert (figures["a"].deployments, figures["a"].failed) == (2, 1)  # v3 quarantined in a
    assert (figures["c"].deployments, figures["c"].aborted_here, figures["c"].failed) == (1, 1, 1)
    assert (figures["b"].deployments, figures["b"].failed) == (1, 0)  # aborted by the fleet stop
    assert figures["c"].change_failure_rate == pytest.approx(0.5)
    assert figures["f"].change_failure_rate == 0.0


@settings(max_examples=150, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_run_of_the_machine_keeps_the_wave_and_stop_rules(rnd: random.Random) -> None:
    """Drive the machine as a deliverer would, with random outcomes: cells start only in wave
    order after the bake and the check; nothing starts after a stop; replaying the recorded
    events gives the same state; every run ends done."""
    start = start_rollout("v2", PLAN, {**OLD, "e": rnd.choice(["v1", "v2"])}, 0.0)
    r, now = start, 0.0
    events: list[Event] = []
    for _ in range(200):
        action = next_action(r, now)
        if action.kind is ActionKind.DONE:
            break
        now += 1.0
        event: Event
        if action.kind is ActionKind.BAKE:
            assert action.until is not None
            now = action.until
            continue
        if rnd.random() < 0.02 and r.stop is None:
            event = Halted("operator", now)
        elif action.kind is ActionKind.START:
            event = CellStarted(rnd.choice(action.cells), now)
        elif action.kind is ActionKind.JUDGE:
            event = ExperimentJudged(action.wave or 0, rnd.random() < 0.1, "", now)
        elif action.kind is ActionKind.REMOVE:
            event = CanaryRemoved(action.cells[0], now)
        else:  # WATCH
            cell = rnd.choice(action.cells)
            roll = rnd.random()
            if roll < 0.05:
                event = CellFailed(cell, "judge", now)
            elif roll < 0.5 or r.state(cell).step == 4:
                event = CellPromoted(cell, now)
            else:
                event = CellStepPassed(cell, r.state(cell).step + 1, now)
        before = r
        r = apply(r, event)
        events.append(event)
        if isinstance(event, CellStarted):
            wave = r.state(event.cell).wave
            earlier = [c for c in r.cells if c.wave < wave]
            # every earlier wave finished, baked and judged
            assert all(c.phase in (CellPhase.PROMOTED, CellPhase.SKIPPED) for c in earlier)
            done = [c for c in earlier if c.finished_at is not None]
            if done:
                last = max(c.wave for c in done)
                baked = max(c.finished_at or 0 for c in done if c.wave == last)
                assert event.at >= baked + PLAN.waves[last].bake_seconds
                assert any(e.after_wave == last and not e.worse for e in r.experiments)
            assert before.stop is None
        if before.stop is not None:
            assert r.in_phase(CellPhase.CANARY, CellPhase.PENDING) == ()
    assert next_action(r, now).kind is ActionKind.DONE
    assert replay(start, events) == r
    if r.stop is None:
        assert set(r.in_phase(CellPhase.PROMOTED, CellPhase.SKIPPED)) == set(CELLS)
        assert len(r.experiments) == len(PLAN.waves) - 1
    else:
        assert r.in_phase(CellPhase.PENDING, CellPhase.CANARY) == ()
        assert all(c.removed for c in r.cells if c.phase is CellPhase.ABORTED)
        if r.quarantined:
            assert r.in_phase(CellPhase.PROMOTED) == ()
        started = [c.started_at for c in r.cells if c.started_at is not None]
        assert all(t <= r.stop.at for t in started)


def test_experiment_copes_with_cells_where_every_request_failed() -> None:
    new = [CellCounts("a", 100, 100, 100, 100)]
    old = [CellCounts("b", 100, 100, 100, 100), CellCounts("c", 100, 1, 100, 1)]
    verdict = judge_experiment(0, {"5xx": new}, {"5xx": old}, alpha=0.01)
    assert not verdict.worse
    assert np.isfinite(verdict.metrics[0].p)
