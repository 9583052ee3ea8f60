"""A rollout of one version across the waves of an environment's cells: a pure state machine.

State is a frozen `Rollout`; events are frozen dataclasses; `apply(rollout, event)` returns the
next state and `next_action(rollout, now)` says what the deliverer does next. A rollout is rebuilt
after a crash by `replay(start, events)` over the events it recorded, so a deliverer killed
between waves resumes where it stood.

Per cell: pending -> canary(step k) -> promoted, or aborted, or skipped (never started because
the rollout stopped, or already on the version), or quarantined (promoted, then the version
failed elsewhere). Within a cell the canary runs the environment's steps against that cell's own
fresh baseline, as a single-cell delivery does today; this machine sees only the outcome.

**Fleet-wide stop rule** (ADR 132). A failure in any cell, or a "worse" natural experiment
between waves, stops the rollout: no further cell starts, canaries running in other cells are
aborted, pending cells are skipped, and cells that already promoted the version keep it but are
quarantined: the version is refused by every later rollout, and the fix-forward delivery goes to
the quarantined cells first (`fix_forward_plan`). An operator's halt stops the rollout the same
way without quarantining anything: nothing failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from delivery.cells.schema import CellsError, Wave, WavePlan


class CellPhase(StrEnum):
    PENDING = "pending"
    CANARY = "canary"
    PROMOTED = "promoted"
    ABORTED = "aborted"
    SKIPPED = "skipped"
    QUARANTINED = "quarantined"


class StopKind(StrEnum):
    CELL_FAILED = "cell_failed"  # a cell's judge, checks or deliverer failed its canary
    EXPERIMENT = "experiment"  # promoted cells worse than old ones between waves
    HALTED = "halted"  # an operator stopped it


@dataclass(frozen=True)
class CellState:
    cell: str
    wave: int
    from_version: str  # the cell's stable version when the rollout started
    phase: CellPhase = CellPhase.PENDING
    step: int = 0  # the last canary step that passed (0: none yet)
    started_at: float | None = None
    finished_at: float | None = None
    reason: str = ""
    removed: bool = False  # an aborted canary's deployments are gone (crash-safe cleanup)


@dataclass(frozen=True)
class ExperimentResult:
    after_wave: int
    worse: bool
    summary: str
    at: float


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    wave: int
    cell: str | None
    reason: str
    at: float
    rule: str  # what the stop did, in words: recorded in the ledger and shown by status


@dataclass(frozen=True)
class Rollout:
    version: str
    plan: WavePlan
    cells: tuple[CellState, ...]
    started_at: float
    experiments: tuple[ExperimentResult, ...] = ()
    stop: Stop | None = None

    def state(self, cell: str) -> CellState:
        for c in self.cells:
            if c.cell == cell:
                return c
        raise CellsError(f"rollout of {self.version}: no cell {cell!r}")

    def in_phase(self, *phases: CellPhase) -> tuple[str, ...]:
        return tuple(c.cell for c in self.cells if c.phase in phases)

    @property
    def current_wave(self) -> int | None:
        """The first wave with a cell still pending or in canary; None when none is left."""
        for c in sorted(self.cells, key=lambda s: s.wave):
            if c.phase in (CellPhase.PENDING, CellPhase.CANARY):
                return c.wave
        return None

    @property
    def quarantined(self) -> bool:
        return self.stop is not None and self.stop.kind is not StopKind.HALTED

    @property
    def status(self) -> str:
        if self.stop is not None:
            return "stopped"
        return "complete" if self.current_wave is None else "running"


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellStarted:
    cell: str
    at: float


@dataclass(frozen=True)
class CellStepPassed:
    cell: str
    step: int
    at: float


@dataclass(frozen=True)
class CellPromoted:
    cell: str
    at: float


@dataclass(frozen=True)
class CellFailed:
    cell: str
    reason: str
    at: float


@dataclass(frozen=True)
class CanaryRemoved:
    cell: str
    at: float


@dataclass(frozen=True)
class ExperimentJudged:
    after_wave: int
    worse: bool
    summary: str
    at: float


@dataclass(frozen=True)
class Halted:
    reason: str
    at: float


Event = (
    CellStarted
    | CellStepPassed
    | CellPromoted
    | CellFailed
    | CanaryRemoved
    | ExperimentJudged
    | Halted
)


# --- actions -------------------------------------------------------------------------------------


class ActionKind(StrEnum):
    START = "start"  # start the canary in these cells (the current wave)
    WATCH = "watch"  # canaries are running in these cells: drive their steps
    BAKE = "bake"  # wait until `until`: the bake after a promoted wave
    JUDGE = "judge"  # run the natural experiment: `cells` (new version) vs `control` (old)
    REMOVE = "remove"  # remove the aborted canaries in these cells (after a stop)
    DONE = "done"  # nothing left to do: complete or stopped and cleaned


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    cells: tuple[str, ...] = ()
    control: tuple[str, ...] = ()
    wave: int | None = None
    until: float | None = None


# --- the machine ---------------------------------------------------------------------------------


def start_rollout(
    version: str,
    plan: WavePlan,
    stable: Mapping[str, str],
    at: float,
    *,
    quarantined_versions: Iterable[str] = (),
) -> Rollout:
    """A new rollout. Refuses a quarantined version (it failed before: ship its fix instead)
    and a plan that does not cover exactly the cells whose stable versions are given. Cells
    already running the version are skipped."""
    if not version:
        raise CellsError("rollout: empty version")
    if version in set(quarantined_versions):
        raise CellsError(
            f"rollout: version {version} is quarantined (it failed in an earlier rollout); "
            "deliver its fix-forward commit instead"
        )
    planned, known = set(plan.cells), set(stable)
    if planned != known:
        raise CellsError(
            f"rollout: plan {plan.name} covers {sorted(planned)}, the environment has "
            f"{sorted(known)}"
        )
    cells = tuple(
        CellState(
            cell=c,
            wave=plan.wave_of(c),
            from_version=stable[c],
            phase=CellPhase.SKIPPED if stable[c] == version else CellPhase.PENDING,
            reason="already on this version" if stable[c] == version else "",
        )
        for c in plan.cells
    )
    return Rollout(version, plan, cells, at)


def _set(r: Rollout, cell: str, **changes: Any) -> Rollout:
    r.state(cell)
    cells = tuple(replace(c, **changes) if c.cell == cell else c for c in r.cells)
    return replace(r, cells=cells)


def _stop(r: Rollout, kind: StopKind, cell: str | None, reason: str, at: float) -> Rollout:
    wave = r.current_wave
    wave = wave if wave is not None else len(r.plan.waves) - 1
    promoted = r.in_phase(CellPhase.PROMOTED)
    quarantine = kind is not StopKind.HALTED
    cells: list[CellState] = []
    for c in r.cells:
        if c.phase is CellPhase.CANARY:
            why = reason if c.cell == cell else f"fleet stop: {reason}"
            c = replace(c, phase=CellPhase.ABORTED, finished_at=at, reason=why)
        elif c.phase is CellPhase.PENDING:
            c = replace(c, phase=CellPhase.SKIPPED, reason=f"fleet stop: {reason}")
        elif c.phase is CellPhase.PROMOTED and quarantine:
            c = replace(c, phase=CellPhase.QUARANTINED, reason=f"version quarantined: {reason}")
        cells.append(c)
    if quarantine:
        rule = f"stop: no further cell starts; version {r.version} quarantined" + (
            f"; {len(promoted)} promoted cell(s) keep it and get the fix first: "
            f"{', '.join(promoted)}"
            if promoted
            else "; no cell had promoted it"
        )
    else:
        rule = "halt: no further cell starts; promoted cells keep the version"
    stop = Stop(kind, wave, cell, reason, at, rule)
    return replace(r, cells=tuple(cells), stop=stop)


def apply(r: Rollout, event: Event) -> Rollout:  # noqa: C901  one flat match over event kinds reads best as a table
    """The next state. Events that contradict the state are errors, except repeats of what is
    already recorded (a resumed deliverer may report the same outcome twice)."""
    if isinstance(event, CanaryRemoved):
        s = r.state(event.cell)
        if s.phase is not CellPhase.ABORTED:
            raise CellsError(f"rollout: {event.cell} is {s.phase}, not aborted: nothing to remove")
        return _set(r, event.cell, removed=True)
    if r.stop is not None:
        if isinstance(event, CellFailed | Halted):
            return r  # already stopped: the first stop is the one on record
        raise CellsError(f"rollout of {r.version} is stopped; {type(event).__name__} refused")
    if isinstance(event, Halted):
        if r.current_wave is None:
            return r  # complete: nothing left to stop
        return _stop(r, StopKind.HALTED, None, event.reason, event.at)
    if isinstance(event, ExperimentJudged):
        if any(e.after_wave == event.after_wave for e in r.experiments):
            return r
        result = ExperimentResult(event.after_wave, event.worse, event.summary, event.at)
        r = replace(r, experiments=(*r.experiments, result))
        if event.worse:
            reason = f"cells on {r.version} worse than cells on the old version: {event.summary}"
            return _stop(r, StopKind.EXPERIMENT, None, reason, event.at)
        return r
    s = r.state(event.cell)
    if isinstance(event, CellStarted):
        if s.started_at is not None:
            return r  # a repeat: this cell's canary started already
        action = next_action(r, event.at)
        if action.kind is not ActionKind.START or event.cell not in action.cells:
            raise CellsError(
                f"rollout: {event.cell} may not start now ({s.phase}, wave {s.wave}; "
                f"next action is {action.kind} {list(action.cells)})"
            )
        return _set(r, event.cell, phase=CellPhase.CANARY, started_at=event.at)
    if isinstance(event, CellStepPassed):
        if 1 <= event.step <= s.step:
            return r  # a repeat
        if s.phase is not CellPhase.CANARY:
            raise CellsError(f"rollout: {event.cell} is {s.phase}, not in canary")
        if event.step != s.step + 1:
            raise CellsError(f"rollout: {event.cell} passed step {event.step} after {s.step}")
        return _set(r, event.cell, step=event.step)
    if isinstance(event, CellPromoted):
        if s.phase is CellPhase.PROMOTED:
            return r
        if s.phase is not CellPhase.CANARY:
            raise CellsError(f"rollout: {event.cell} is {s.phase}, cannot promote")
        return _set(r, event.cell, phase=CellPhase.PROMOTED, finished_at=event.at)
    # CellFailed
    if s.phase is not CellPhase.CANARY:
        raise CellsError(f"rollout: {event.cell} is {s.phase}; only a canary can fail")
    return _stop(r, StopKind.CELL_FAILED, event.cell, f"{event.cell}: {event.reason}", event.at)


def replay(start: Rollout, events: Iterable[Event]) -> Rollout:
    r = start
    for event in events:
        r = apply(r, event)
    return r


def next_action(r: Rollout, now: float) -> Action:
    if r.stop is not None:
        leftover = tuple(c.cell for c in r.cells if c.phase is CellPhase.ABORTED and not c.removed)
        if leftover:
            return Action(ActionKind.REMOVE, leftover)
        return Action(ActionKind.DONE)
    wave = r.current_wave
    if wave is None:
        return Action(ActionKind.DONE)
    members = [c for c in r.cells if c.wave == wave]
    pending = tuple(c.cell for c in members if c.phase is CellPhase.PENDING)
    if pending:
        return _gate(r, now) or Action(ActionKind.START, pending, wave=wave)
    running = tuple(c.cell for c in members if c.phase is CellPhase.CANARY)
    return Action(ActionKind.WATCH, running, wave=wave)


def _gate(r: Rollout, now: float) -> Action | None:
    """What must happen before the current wave starts: the bake of the last wave that
    promoted, then the natural experiment over it. None when the wave may start."""
    wave = r.current_wave
    before = [c for c in r.cells if wave is not None and c.wave < wave and c.finished_at]
    if not before:
        return None
    last = max(c.wave for c in before)
    until = max(c.finished_at or 0.0 for c in before if c.wave == last)
    until += r.plan.waves[last].bake_seconds
    if now < until:
        return Action(ActionKind.BAKE, wave=last, until=until)
    if any(e.after_wave == last for e in r.experiments):
        return None
    new = tuple(
        c.cell
        for c in r.cells
        if c.phase is CellPhase.PROMOTED
        or (c.phase is CellPhase.SKIPPED and c.from_version == r.version)
    )
    old = r.in_phase(CellPhase.PENDING)
    return Action(ActionKind.JUDGE, new, control=old, wave=last)


def fix_forward_plan(plan: WavePlan, quarantined: Iterable[str]) -> WavePlan:
    """The plan for the fix of a quarantined version: the quarantined cells first, in the
    shape of the waves they came from, then every other cell in its usual wave. The cells that
    run the bad version have the most to gain and, having run it, the best baseline."""
    hit = set(quarantined)
    unknown = sorted(hit - set(plan.cells))
    if unknown:
        raise CellsError(f"fix-forward: cell(s) {unknown} are not in plan {plan.name}")
    first = [Wave(tuple(c for c in w.cells if c in hit), w.bake_seconds) for w in plan.waves]
    then = [Wave(tuple(c for c in w.cells if c not in hit), w.bake_seconds) for w in plan.waves]
    waves = tuple(w for w in (*first, *then) if w.cells)
    return WavePlan(f"{plan.name}+fix-forward", waves)
