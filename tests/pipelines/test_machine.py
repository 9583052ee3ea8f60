"""The delivery state machine and crash recovery decisions."""

import pytest
from delivery.machine import IDLE, Phase, State, abort, after_verdict, recover, start


def run(outcomes: list[str], steps: int = 3, max_extensions: int = 1) -> list[State]:
    state = start(IDLE)
    seen = [state]
    for outcome in outcomes:
        state = after_verdict(state, outcome, steps=steps, max_extensions=max_extensions)
        seen.append(state)
    return seen


def test_all_passes_walk_the_steps_then_promote() -> None:
    states = run(["pass", "pass", "pass"])
    assert [(s.phase, s.step) for s in states] == [
        (Phase.CANARY, 0),
        (Phase.CANARY, 1),
        (Phase.CANARY, 2),
        (Phase.PROMOTED, 2),
    ]
    assert states[-1].done


def test_fail_aborts_at_that_step() -> None:
    final = run(["pass", "fail"])[-1]
    assert (final.phase, final.step) == (Phase.ABORTED, 1)
    assert "judge failed" in final.reason


def test_inconclusive_extends_up_to_the_limit_then_aborts() -> None:
    states = run(["inconclusive", "inconclusive"], max_extensions=1)
    assert (states[1].phase, states[1].step, states[1].extensions) == (Phase.CANARY, 0, 1)
    assert states[2].phase is Phase.ABORTED
    assert "inconclusive after 1" in states[2].reason


def test_inconclusive_then_pass_moves_on_and_resets_extensions() -> None:
    states = run(["inconclusive", "pass"])
    assert (states[2].phase, states[2].step, states[2].extensions) == (Phase.CANARY, 1, 0)


def test_bad_transitions_are_errors() -> None:
    with pytest.raises(ValueError, match="cannot start"):
        start(State(Phase.CANARY))
    with pytest.raises(ValueError, match="no verdict is expected"):
        after_verdict(IDLE, "pass", steps=1, max_extensions=0)
    with pytest.raises(ValueError, match="unknown verdict outcome"):
        after_verdict(start(IDLE), "maybe", steps=1, max_extensions=0)


def test_abort_is_idempotent_on_finished_states() -> None:
    promoted = State(Phase.PROMOTED, 2)
    assert abort(promoted, "late") is promoted
    assert abort(start(IDLE), "operator").reason == "operator"


def test_recovery_decisions() -> None:
    clean = recover("", 0, [])
    assert not clean.needed
    crashed = recover("v2", 25, ["d1"])
    assert crashed.abort_target
    assert crashed.close == ("d1",)
    assert not crashed.record_orphan
    orphan = recover("v2", 0, [])
    assert orphan.abort_target
    assert orphan.record_orphan
    ledger_only = recover("", 0, ["d1"])  # died after removing the canary, before recording
    assert not ledger_only.abort_target
    assert ledger_only.close == ("d1",)
