"""One version rolled out across an environment's cells, wave by wave (docs/cells.md).

The decisions are the pure core's: `delivery.cells.rollout` (the state machine over waves and its
fleet-wide stop rule), `delivery.cells.experiment` (the between-waves natural experiment) and
`delivery.cells.records` (the per-cell record). Inside a cell, the single-cell canary flow runs
unchanged (`flow.Delivery.run_canary`): its steps are judged against that cell's fresh baseline,
per tenant, on the cell's own series. This module is the shell between them: it performs each
action `next_action` names, and appends every event to the ledger before the next action, so a
deliverer killed anywhere resumes by replaying the events (ADR 161).

Ledger records of one rollout, all under one delivery id (ADR 162):

    started        ledger.Started: the version, its commit, the stable version(s)
    cells_rollout  the plan's waves with their bakes, each cell's stable version, the start time
    cells_event    one per rollout event: cell started, step passed, promoted, failed, ...
    step           ledger.StepRecord plus `cell`: each judged look of each cell's canary
    finished       ledger.Finished plus `cells` (RolloutRecord): one record, a record per cell
"""

import contextlib
import dataclasses
import datetime as dt
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
from image_contracts.metrics import REQUEST_DURATION_BUCKET, REQUESTS
from image_contracts.tenants import CELL_NAME

from delivery import haproxy, step_checks, versions
from delivery.ancestry import stable_commit
from delivery.cells.experiment import CellCounts, cell_judge_policy, check_alpha, judge_experiment
from delivery.cells.records import RolloutRecord
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
    apply,
    fix_forward_plan,
    next_action,
    replay,
    start_rollout,
)
from delivery.cells.schema import CellsError, Wave, WavePlan
from delivery.config import DeliveryConfig, Step
from delivery.delta import ChangeKind, gate
from delivery.flow import Delivery, Forward, RunRequest, Stopped, Witnesses, redeploy_refusal
from delivery.judge import JudgePolicy
from delivery.ledger import (
    SCHEMA_VERSION,
    Finished,
    Ledger,
    Outcome,
    PlannedStep,
    Record,
    Started,
    StepResult,
    Subject,
    deliveries,
    to_json,
)
from delivery.local_cells import CellsLocal
from delivery.metrics import MetricsUnavailableError, PrometheusSource
from delivery.progress import Printer
from delivery.target import VersionInfo

ROLLOUT = "cells_rollout"
EVENT = "cells_event"
EVENTS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        CellStarted,
        CellStepPassed,
        CellPromoted,
        CellFailed,
        CanaryRemoved,
        ExperimentJudged,
        Halted,
    )
}
# The between-waves experiment: the rollout's false-stop budget (ADR 134) and how much worse
# the new version's cells may get before it counts (relative rise of the bad-event ratio).
EXPERIMENT_BUDGET = 0.01
EXPERIMENT_TOLERANCE = 0.1
SLOW_SECONDS = "0.5"  # "slow": over the SLO bucket; a bucket bound the service exports


# --- records (pure) ------------------------------------------------------------------------------


def event_to_json(event: Event) -> dict[str, Any]:
    return {"event": type(event).__name__, **dataclasses.asdict(event)}


def event_from_json(raw: Mapping[str, Any]) -> Event:
    cls = EVENTS.get(str(raw.get("event")))
    if cls is None:
        raise CellsError(f"unknown rollout event {raw.get('event')!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    event: Event = cls(**{n: raw[n] for n in names})
    return event


@dataclass(frozen=True)
class RolloutStart:
    """What `start_rollout` was given: enough to rebuild the rollout before its events."""

    delivery_id: str
    env: str
    version: str
    plan: WavePlan
    stable: Mapping[str, str]  # cell -> its stable version when the rollout started
    at: float

    def rollout(self) -> Rollout:
        return start_rollout(self.version, self.plan, self.stable, self.at)

    def to_json(self, recorded_at: str) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": ROLLOUT,
            "delivery_id": self.delivery_id,
            "env": self.env,
            "recorded_at": recorded_at,
            "version": self.version,
            "plan": self.plan.name,
            "waves": [
                {"cells": list(w.cells), "bake_seconds": w.bake_seconds} for w in self.plan.waves
            ],
            "stable": dict(self.stable),
            "at": self.at,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "RolloutStart":
        waves = tuple(
            Wave(tuple(str(c) for c in w["cells"]), float(w["bake_seconds"])) for w in raw["waves"]
        )
        return cls(
            str(raw["delivery_id"]),
            str(raw["env"]),
            str(raw["version"]),
            WavePlan(str(raw["plan"]), waves),
            {str(k): str(v) for k, v in raw["stable"].items()},
            float(raw["at"]),
        )


@dataclass(frozen=True)
class OpenRollout:
    """A rollout whose deliverer died before its `finished` record: what it takes to resume."""

    start: RolloutStart
    subject: Subject
    events: tuple[Event, ...]
    steps: tuple[tuple[str, StepResult], ...]  # (cell, step) already judged

    def rollout(self) -> Rollout:
        return replay(self.start.rollout(), self.events)


def open_rollout(records: Sequence[Mapping[str, Any]], env: str) -> OpenRollout | None:
    """The env's rollout that started and never finished (at most one: the lock), if any."""
    finished = {r.get("delivery_id") for r in records if r.get("kind") == "finished"}
    starts = [
        r
        for r in records
        if r.get("kind") == ROLLOUT and r.get("env") == env and r["delivery_id"] not in finished
    ]
    if not starts:
        return None
    start = RolloutStart.from_json(starts[-1])
    did = start.delivery_id
    subject = next(
        (v.subject for v in deliveries(records, env) if v.delivery_id == did),
        Subject(version=start.version),
    )
    mine = [r for r in records if r.get("delivery_id") == did]
    events = tuple(event_from_json(r) for r in mine if r.get("kind") == EVENT)
    steps = tuple(
        (str(r.get("cell") or ""), StepResult.from_json(r)) for r in mine if r.get("kind") == "step"
    )
    return OpenRollout(start, subject, events, steps)


def rollout_records(records: Sequence[Mapping[str, Any]], env: str) -> list[RolloutRecord]:
    """The finished rollouts of the env, oldest first (the `cells` of their finished records)."""
    return [
        RolloutRecord.from_json(r["cells"])
        for r in records
        if r.get("kind") == "finished" and r.get("env") == env and isinstance(r.get("cells"), dict)
    ]


def quarantined_versions(records: Sequence[RolloutRecord]) -> tuple[str, ...]:
    return tuple(r.version for r in records if r.quarantined)


def release_order(
    stables: Sequence[str], records: Sequence[RolloutRecord], unfinished: Rollout | None = None
) -> list[str]:
    """Versions oldest first: those no rollout brought (the initial stable), then each version
    in the order a rollout first promoted it in some cell; an unfinished rollout that promoted
    a cell brought the newest."""
    promoted = [
        r.version
        for r in records
        if any(c.outcome in (CellPhase.PROMOTED, CellPhase.QUARANTINED) for c in r.cells)
    ]
    if unfinished is not None and unfinished.in_phase(CellPhase.PROMOTED):
        promoted = [v for v in promoted if v != unfinished.version] + [unfinished.version]
    order = [v for v in dict.fromkeys(stables) if v not in promoted]
    return order + [v for v in dict.fromkeys(promoted)]


def render_rollout(record: RolloutRecord) -> str:
    """The per-cell verdicts: what the summary and `deliver status` print."""
    lines = [
        f"rollout of {record.version} over {len(record.cells)} cell(s), plan {record.plan}: "
        f"{record.status.upper()}" + (" (version quarantined)" if record.quarantined else ""),
        f"  {'wave':<4} {'cell':<12} {'from':<26} {'verdict':<12} {'steps':>5}  reason",
    ]
    for c in sorted(record.cells, key=lambda c: (c.wave, c.cell)):
        lines.append(
            f"  {c.wave:<4} {c.cell:<12} {c.from_version:<26} {c.outcome.value.upper():<12} "
            f"{c.steps_passed:>5}  {c.reason[:110]}"
        )
    for e in record.experiments:
        verdict = "WORSE" if e.worse else "not worse"
        lines.append(
            f"  between waves {e.after_wave} and {e.after_wave + 1}: {verdict} - {e.summary}"
        )
    if record.stop is not None:
        lines.append(f"  stop ({record.stop.kind.value}): {record.stop.reason}")
        lines.append(f"  rule: {record.stop.rule}")
    return "\n".join(lines)


# --- adapters: one cell's view of the shared ledger, metrics, printer -----------------------------


class CellLedger:
    """The ledger as one cell's canary writes to it: every record says which cell."""

    def __init__(self, inner: Ledger, cell: str) -> None:
        self.inner = inner
        self.cell = cell
        self.location = inner.location

    def append(self, record: Record | Mapping[str, Any]) -> None:
        doc = dict(record) if isinstance(record, Mapping) else to_json(record)
        self.inner.append({**doc, "cell": self.cell})

    def read(self) -> Any:
        return self.inner.read()


class CellMetrics(PrometheusSource):
    """The judge reads the cell's own series: every selector the judge's queries build
    (`delivery.metrics.selector`, which starts with `track="`) gains `cell="<cell>"`."""

    def __init__(self, base_url: str, cell: str, client: httpx.Client | None = None) -> None:
        if not CELL_NAME.fullmatch(cell):
            raise ValueError(f"refusing to put {cell!r} into a PromQL selector")
        super().__init__(base_url, client=client)
        self.cell = cell

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        scoped = expr.replace('{track="', f'{{cell="{self.cell}",track="')
        if scoped == expr:
            raise MetricsUnavailableError(f"no track selector to scope to cell {self.cell}: {expr}")
        return super().query_range(scoped, start, end, step)


class CellPrinter(Printer):
    """Every line a cell's canary prints starts with the cell's name."""

    def __init__(self, inner: Printer, cell: str) -> None:
        super().__init__(inner.stream)
        self.inner = inner
        self.prefix = f"[{cell}] "

    def live(self, line: str) -> None:
        self.inner.live(self.prefix + line)

    def say(self, text: str) -> None:
        self.inner.say("\n".join(self.prefix + line for line in text.rstrip("\n").split("\n")))


def cell_witnesses(cell: str) -> Witnesses:
    """The step checks read the gateway's counters of the cell's own backend."""
    backend = haproxy.cell_backend(cell)
    return Witnesses(
        snapshot=lambda e: step_checks.snapshot(
            {"canary": e.canary, "baseline": e.baseline}, e.gateway_metrics, backend
        )
    )


# --- the run (effects) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WavesResult:
    outcome: Outcome
    reason: str
    record: RolloutRecord | None = None
    delivery_id: str = ""
    error: str = ""


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


class WaveDelivery:
    def __init__(  # noqa: PLR0913  each parameter is an injected dependency
        self,
        cfg: DeliveryConfig,
        cells: CellsLocal,
        ledger: Ledger,
        printer: Printer,
        *,
        prometheus_url: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        stoppable: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        forward: Forward | None = None,
    ) -> None:
        steps = tuple(Step(w, b) for w, b in cells.catalog.canary_steps)
        short = [b for _, b in cells.catalog.canary_steps if b < 2 * cfg.interval_seconds]
        if short:
            raise CellsError(
                f"{cells.catalog.source}: canary_steps bake {short[0]}s holds fewer than two "
                f"{cfg.interval_seconds}s judge intervals"
            )
        self.cfg = dataclasses.replace(cfg, steps=steps) if steps else cfg
        self.cells = cells
        self.ledger = ledger
        self.out = printer
        self.prometheus_url = prometheus_url
        self.clock = clock
        self.sleep = sleep
        self.stoppable = stoppable
        self.forward = forward
        self.steps: list[tuple[str, StepResult]] = []
        self.current: Rollout | None = None
        n = len(cells.catalog.names)
        # ADR 134: one cell's false fail stops the fleet, so each cell's canary gets 1/n of it.
        self.policy = JudgePolicy.from_mapping(cell_judge_policy(cfg.judge, n))

    # --- ledger -----------------------------------------------------------------------------
    def _append(self, did: str, doc: Mapping[str, Any]) -> None:
        self.ledger.append(
            {
                "schema_version": SCHEMA_VERSION,
                "delivery_id": did,
                "env": self.cfg.env,
                "recorded_at": _iso(self.clock()),
                **doc,
            }
        )

    def _event(self, did: str, r: Rollout, event: Event) -> Rollout:
        """Apply, then record: a refused event changes nothing and is never written."""
        after = apply(r, event)
        self._append(did, {"kind": EVENT, **event_to_json(event)})
        self.current = after  # what a stop that interrupts the loop continues from
        return after

    # --- start or resume ----------------------------------------------------------------------
    def run(self, req: RunRequest) -> WavesResult:
        records = self.ledger.read().records
        found = open_rollout(records, self.cfg.env)
        if found is not None:
            return self._resume(found, req)
        return self._start(req, records)

    def _resume(self, found: OpenRollout, req: RunRequest) -> WavesResult:
        version = found.start.version
        if req.version not in ("worktree", version):
            asked = versions.resolve(self.cells.repo, req.version, self.cells.settings.versions)[
                0
            ].version
            if asked != version:
                reason = (
                    f"the rollout {found.start.delivery_id} of {version} is unfinished: "
                    f"`deliver run --version {version}` resumes it, `deliver abort` halts it"
                )
                return WavesResult(Outcome.REFUSED, reason)
        launch = self.cells.saved_launch(version)
        if launch is None:
            self.cells.targets[found.start.plan.cells[0]].resolve(req.version)
            launch = self.cells.targets[found.start.plan.cells[0]].launch_for(version)
        if launch is None:
            return WavesResult(Outcome.REFUSED, f"cannot start {version} again: resolve it first")
        for target in self.cells.targets.values():
            target.adopt(version, launch)
        rollout = found.rollout()
        self.steps = list(found.steps)
        did = found.start.delivery_id
        where = rollout.current_wave
        self.out.say(
            f"resuming rollout {did} of {version} (wave {where if where is not None else '-'}, "
            f"{len(found.events)} event(s) recorded)"
        )
        info = VersionInfo(version, found.subject.commit, found.subject.commit_time)
        return self._drive(did, found.subject, info, rollout)

    def _refused(self, did: str, subject: Subject, reason: str) -> WavesResult:
        now = _iso(self.clock())
        self.ledger.append(Finished(did, self.cfg.env, now, subject, now, Outcome.REFUSED, reason))
        return WavesResult(Outcome.REFUSED, reason, delivery_id=did)

    def _start(self, req: RunRequest, records: Sequence[Mapping[str, Any]]) -> WavesResult:
        cells = self.cells
        plan = cells.catalog.plan()
        quarantined = quarantined_versions(rollout_records(records, self.cfg.env))
        hit = [c for c in plan.cells if cells.targets[c].state().stable_version in quarantined]
        if hit:  # ADR 132: the fix-forward goes first to the cells running a quarantined version
            plan = fix_forward_plan(plan, hit)
        first = cells.targets[plan.cells[0]]
        info = first.resolve(req.version)
        launch = first.launch_for(info.version)
        assert launch is not None
        for target in cells.targets.values():
            target.adopt(info.version, launch)
        stable = {c: cells.targets[c].state().stable_version for c in plan.cells}
        shown = ", ".join(f"{c}={v or '-'}" for c, v in stable.items())
        stamp = f"{dt.datetime.fromtimestamp(self.clock(), dt.UTC):%Y%m%dT%H%M%S}"
        did = f"{self.cfg.env}-{stamp}-{secrets.token_hex(3)}"
        subject = Subject(
            version=info.version,
            commit=info.commit,
            commit_time=info.commit_time,
            stable_version=stable[plan.cells[0]],
            target=self.cfg.target_kind,
            fixes=req.fixes,
            started_at=_iso(self.clock()),
            planned=tuple(PlannedStep(s.weight, s.bake_seconds) for s in self.cfg.steps),
        )
        waves = " -> ".join("+".join(w.cells) for w in plan.waves)
        self.out.say(f"deliver {info.version} to {self.cfg.env} in waves {waves} (stable {shown})")
        history = deliveries(records, self.cfg.env)
        if all(v == info.version for v in stable.values()):
            return self._refused(did, subject, f"{info.version} is already stable in every cell")
        refusal = redeploy_refusal(info.version, "", history)
        if refusal:
            return self._refused(did, subject, refusal)
        try:
            rollout = start_rollout(
                info.version, plan, stable, self.clock(), quarantined_versions=quarantined
            )
        except CellsError as exc:
            return self._refused(did, subject, str(exc))
        if self.forward is not None:
            fwd = self.forward(
                info.commit or None, stable_commit(history, stable[plan.cells[0]]), req.backward
            )
            self.out.say(f"ancestry: {'ok' if fwd.allowed else 'REFUSED'} - {fwd.reason}")
            if not fwd.allowed:
                return self._refused(did, subject, fwd.reason)
        decision = gate(
            first.preview(info),
            self.cfg.delta,
            intended=ChangeKind.SERVICE,
            allows=req.allows,
            reason=req.reason,
        )
        self.out.say(
            f"delta gate: {'allowed' if decision.allowed else 'REFUSED'} - {decision.kind} "
            f"change, {decision.changes} resource(s) per cell, risk {decision.risk:.1f}"
        )
        subject = dataclasses.replace(subject, delta=decision.to_json())
        if not decision.allowed:
            return self._refused(did, subject, "; ".join(decision.reasons))
        cells.save_launch(launch)
        self.ledger.append(Started(did, self.cfg.env, _iso(self.clock()), subject))
        start = RolloutStart(did, self.cfg.env, info.version, plan, stable, rollout.started_at)
        self.ledger.append(start.to_json(_iso(self.clock())))
        return self._drive(did, subject, info, rollout)

    # --- the loop -----------------------------------------------------------------------------
    def _drive(self, did: str, subject: Subject, info: VersionInfo, r: Rollout) -> WavesResult:
        self.current = r
        while True:
            try:
                with self.stoppable():
                    r = self._loop(did, info, self.current)
                break
            except Stopped as exc:  # an operator's stop between cells: halt, then clean up
                self._event(did, self.current, Halted(str(exc), self.clock()))
        return self._finish(did, subject, r)

    def _loop(self, did: str, info: VersionInfo, r: Rollout) -> Rollout:
        while (action := next_action(r, self.clock())).kind is not ActionKind.DONE:
            if action.kind is ActionKind.START:
                self.out.say(f"wave {action.wave}: starting {', '.join(action.cells)}")
                for cell in action.cells:
                    r = self._event(did, r, CellStarted(cell, self.clock()))
            elif action.kind is ActionKind.WATCH:
                for cell in action.cells:
                    if r.state(cell).phase is CellPhase.CANARY:  # a stop aborts the rest
                        r = self._cell(did, info, r, cell)
            elif action.kind is ActionKind.BAKE:
                self._bake(action.wave or 0, action.until or self.clock())
            elif action.kind is ActionKind.JUDGE:
                r = self._event(
                    did, r, self._experiment(r, action.wave or 0, action.cells, action.control)
                )
            elif action.kind is ActionKind.REMOVE:
                for cell in action.cells:
                    self.cells.targets[cell].abort()
                    r = self._event(did, r, CanaryRemoved(cell, self.clock()))
        return r

    def _cell(self, did: str, info: VersionInfo, r: Rollout, cell: str) -> Rollout:
        target = self.cells.targets[cell]
        state = target.state()
        if state.canary_running:  # left by a deliverer that died mid-canary: start afresh
            self.out.say(f"[{cell}] removing a stale canary {state.canary_version or '?'}")
            target.abort()
        delivery = Delivery(
            self.cfg,
            target,
            CellMetrics(self.prometheus_url, cell),
            CellLedger(self.ledger, cell),
            self.policy,
            CellPrinter(self.out, cell),
            clock=self.clock,
            sleep=self.sleep,
            witnesses=cell_witnesses(cell),
        )
        run = delivery.run_canary(did, info, state.stable_version)
        self.steps += [(cell, s) for s in run.steps]
        for k in range(1, run.steps_passed + 1):
            r = self._event(did, r, CellStepPassed(cell, k, self.clock()))
        if run.stopped:
            return self._event(did, r, Halted(f"{cell}: {run.state.reason}", self.clock()))
        if run.promoted:
            self.out.say(f"[{cell}] PROMOTED {info.version}")
            return self._event(did, r, CellPromoted(cell, self.clock()))
        self.out.say(f"[{cell}] FAILED: {run.state.reason}")
        return self._event(did, r, CellFailed(cell, run.state.reason, self.clock()))

    def _bake(self, wave: int, until: float) -> None:
        while (left := until - self.clock()) > 0:
            self.out.live(f"[bake after wave {wave}] {left:4.0f}s left before the next wave")
            self.sleep(min(self.cfg.progress_seconds, left))

    def _experiment(
        self, r: Rollout, wave: int, new: tuple[str, ...], old: tuple[str, ...]
    ) -> ExperimentJudged:
        """The natural experiment after `wave`: the bake's window in every cell against the
        same length before the rollout started (ADR 133)."""
        now = self.clock()
        window = max(r.plan.waves[wave].bake_seconds, 4 * self.cfg.interval_seconds)
        if not old:
            return ExperimentJudged(wave, False, "no cell left on the old version", now)
        try:
            before = self._counts(r.started_at, window)
            after = self._counts(now, window)
        except MetricsUnavailableError as exc:
            # No data is no evidence of safety: the rollout stops, as the canary judge would.
            return ExperimentJudged(wave, True, f"no metrics: {exc}", now)

        def rows(cells: tuple[str, ...], metric: str) -> list[CellCounts]:
            return [
                CellCounts(
                    c,
                    before.get(c, {}).get("requests", 0.0),
                    min(before.get(c, {}).get(metric, 0.0), before.get(c, {}).get("requests", 0.0)),
                    after.get(c, {}).get("requests", 0.0),
                    min(after.get(c, {}).get(metric, 0.0), after.get(c, {}).get("requests", 0.0)),
                )
                for c in cells
            ]

        metrics = ("5xx", "slow")
        verdict = judge_experiment(
            wave,
            {m: rows(new, m) for m in metrics},
            {m: rows(old, m) for m in metrics},
            alpha=check_alpha(EXPERIMENT_BUDGET, r.plan),
            tolerance=dict.fromkeys(metrics, EXPERIMENT_TOLERANCE),
        )
        self.out.say(
            f"between waves {wave} and {wave + 1}: cells {', '.join(new)} vs {', '.join(old)}: "
            f"{'WORSE' if verdict.worse else 'not worse'} - {verdict.summary}"
        )
        return ExperimentJudged(wave, verdict.worse, verdict.summary, now)

    def _counts(self, at: float, window: float) -> dict[str, dict[str, float]]:
        """Per cell: API requests, 5xx and slow requests over `window` seconds ending `at`."""
        source = PrometheusSource(self.prometheus_url)
        rng = f"[{round(window * 1000)}ms]"
        api = 'route=~"/v1/.*"'
        exprs = {
            "requests": f"sum by (cell) (increase({REQUESTS}{{{api}}}{rng}))",
            "5xx": f'sum by (cell) (increase({REQUESTS}{{{api},code=~"5.."}}{rng}))',
            "fast": (
                f"sum by (cell) (increase({REQUEST_DURATION_BUCKET}"
                f'{{{api},le="{SLOW_SECONDS}"}}{rng}))'
            ),
        }
        out: dict[str, dict[str, float]] = {}
        for name, expr in exprs.items():
            for series in source.query_range(expr, at, at, 1.0):
                cell = str(series["metric"].get("cell", ""))
                value = float(series["values"][-1][1]) if series.get("values") else 0.0
                out.setdefault(cell, {})[name] = value if math.isfinite(value) else 0.0
        for counts in out.values():
            counts["slow"] = max(counts.get("requests", 0.0) - counts.pop("fast", 0.0), 0.0)
        return out

    # --- the record ---------------------------------------------------------------------------
    def _finish(self, did: str, subject: Subject, r: Rollout) -> WavesResult:
        record = RolloutRecord.from_rollout(r)
        complete = r.status == "complete"
        outcome = Outcome.PROMOTED if complete else Outcome.ABORTED
        promoted = len(r.in_phase(CellPhase.PROMOTED))
        reason = (
            f"every cell runs {r.version} ({promoted} promoted in this rollout)"
            if complete
            else (r.stop.reason if r.stop is not None else "stopped")
        )
        now = _iso(self.clock())
        finished = Finished(
            did,
            self.cfg.env,
            now,
            subject,
            now,
            outcome,
            reason,
            steps=tuple(s for _, s in self.steps),
        )
        doc = to_json(finished)
        doc["steps"] = [{**s.to_json(), "cell": c} for c, s in self.steps]
        doc["cells"] = record.to_json()
        self.ledger.append(doc)
        self.cells.launch_file.unlink(missing_ok=True)
        return WavesResult(outcome, reason, record, did)

    def halt(self, reason: str) -> WavesResult | None:
        """`deliver abort` with no deliverer running: halt the unfinished rollout, remove any
        canary it left, record it. None when no rollout is unfinished."""
        found = open_rollout(self.ledger.read().records, self.cfg.env)
        if found is None:
            return None
        did = found.start.delivery_id
        self.steps = list(found.steps)
        r = self._event(did, found.rollout(), Halted(reason, self.clock()))
        info = VersionInfo(found.start.version, found.subject.commit, found.subject.commit_time)
        return self._finish(did, found.subject, self._loop(did, info, r))
