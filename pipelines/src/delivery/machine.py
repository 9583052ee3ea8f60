"""The delivery as a state machine: idle -> canary(step k) -> promoted | aborted.

Pure: the orchestrator feeds it verdict outcomes and does what the new state says. Recovery after
a crash is also decided here, from what the target runs and what the ledger left open.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum


class Phase(StrEnum):
    IDLE = "idle"
    CANARY = "canary"
    PROMOTED = "promoted"
    ABORTED = "aborted"


@dataclass(frozen=True)
class State:
    phase: Phase
    step: int = 0  # index into the configured steps while in CANARY
    extensions: int = 0  # bake extensions used at this step (inconclusive verdicts)
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.phase in {Phase.PROMOTED, Phase.ABORTED}


IDLE = State(Phase.IDLE)


def start(state: State) -> State:
    if state.phase is not Phase.IDLE:
        raise ValueError(f"cannot start a canary from {state.phase}")
    return State(Phase.CANARY, step=0)


def after_verdict(state: State, outcome: str, *, steps: int, max_extensions: int) -> State:
    """The next state once the judge has spoken on the current step."""
    if state.phase is not Phase.CANARY:
        raise ValueError(f"no verdict is expected in {state.phase}")
    if outcome == "fail":
        return State(Phase.ABORTED, state.step, state.extensions, "the judge failed the canary")
    if outcome == "inconclusive":
        if state.extensions < max_extensions:
            return replace(state, extensions=state.extensions + 1, reason="bake extended")
        return State(
            Phase.ABORTED,
            state.step,
            state.extensions,
            f"still inconclusive after {max_extensions} bake extension(s)",
        )
    if outcome != "pass":
        raise ValueError(f"unknown verdict outcome {outcome!r}")
    if state.step + 1 >= steps:
        return State(Phase.PROMOTED, state.step, 0, "every step passed")
    return State(Phase.CANARY, state.step + 1)


def abort(state: State, reason: str) -> State:
    if state.done:
        return state
    return State(Phase.ABORTED, state.step, state.extensions, reason)


@dataclass(frozen=True)
class Recovery:
    """What to do before anything else when a previous run may have died mid-canary."""

    abort_target: bool  # a canary (or baseline) still runs: remove it, stable untouched
    close: tuple[str, ...]  # open ledger deliveries to record as aborted
    record_orphan: bool  # the target runs a canary the ledger knows nothing of

    @property
    def needed(self) -> bool:
        return self.abort_target or bool(self.close)


def recover(canary_version: str, canary_weight: int, open_ids: Sequence[str]) -> Recovery:
    running = bool(canary_version) or canary_weight > 0
    return Recovery(
        abort_target=running,
        close=tuple(open_ids),
        record_orphan=running and not open_ids,
    )
