"""One delivery, top to bottom: the state machine that decides, and the run that acts on it.

    recover -> resolve -> refuse redeploys -> preview -> delta gate -> canary + fresh baseline
    at weight 0 -> post-deploy checks -> per step: set weight, bake (live progress; interim
    looks may fail early), judge the step's window -> promote or abort -> ledger record.

The first half of this module is pure: the states (`idle -> canary(step k) -> promoted |
aborted`), their transitions with the reason each one gives, and the recovery plan after a crash.
The second half, `Delivery`, performs what the states say through the `Target`, reads metrics
through the `MetricsSource`, asks the judge, and writes typed records to the ledger. It takes its
time and its sleep from the caller, and it is interrupted only where the caller allows it
(`stoppable`): the CLI owns the signal handlers.
"""

import contextlib
import datetime as dt
import json
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from enum import StrEnum

from delivery import probes, procs, step_checks
from delivery.ancestry import ForwardDecision, Override, stable_commit
from delivery.config import DeliveryConfig
from delivery.delta import Allow, ChangeKind, GateDecision, Preview, gate
from delivery.judge import JudgePolicy, Verdict, judge, look_schedule
from delivery.ledger import (
    Change,
    DeliveryView,
    Finished,
    Ledger,
    Outcome,
    PlannedStep,
    Started,
    StepRecord,
    StepResult,
    Subject,
    deliveries,
)
from delivery.metrics import MetricsSource, MetricsUnavailableError, Window, empty_observation
from delivery.probes import ProbeReport, ProbeTenant, Tolerance
from delivery.progress import Printer, progress_line
from delivery.step_checks import ChecksPolicy, Snapshot
from delivery.target import Check, Endpoints, Health, Target, TargetState, VersionInfo

# --- the state machine (pure) ---------------------------------------------------------------


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


@dataclass(frozen=True)
class Look:
    """What the judge said at the end of one bake, and what the step was."""

    outcome: str  # the verdict's: pass | fail | inconclusive
    weight: int
    reasons: tuple[str, ...] = ()  # the verdict's reasons, most important first
    metrics_error: str = ""  # the metrics backend could not answer


def start(state: State) -> State:
    if state.phase is not Phase.IDLE:
        raise ValueError(f"cannot start a canary from {state.phase}")
    return State(Phase.CANARY, step=0)


def after_checks(state: State, failed: Sequence[str]) -> State:
    """Post-deploy checks run before any traffic: one failure aborts."""
    if state.phase is not Phase.CANARY:
        raise ValueError(f"no post-deploy checks are expected in {state.phase}")
    if failed:
        return abort(state, f"post-deploy checks failed: {', '.join(failed)}")
    return state


def after_verdict(state: State, look: Look, *, steps: int, max_extensions: int) -> State:
    """The next state once the judge has spoken on the current step."""
    if state.phase is not Phase.CANARY:
        raise ValueError(f"no verdict is expected in {state.phase}")
    if look.outcome not in {"pass", "fail", "inconclusive"}:
        raise ValueError(f"unknown verdict outcome {look.outcome!r}")
    if look.outcome == "pass":
        if state.step + 1 >= steps:
            return State(Phase.PROMOTED, state.step, 0, "every step passed")
        return State(Phase.CANARY, state.step + 1)
    if look.outcome == "inconclusive" and state.extensions < max_extensions:
        return replace(state, extensions=state.extensions + 1, reason="bake extended")
    if look.metrics_error:
        reason = f"no metrics: {look.metrics_error}"
    elif look.outcome == "fail":
        detail = "; ".join(look.reasons[:3])
        reason = f"the judge failed the canary at {look.weight}%" + (
            f": {detail}" if detail else ""
        )
    else:
        reason = f"still inconclusive after {max_extensions} bake extension(s)"
    return State(Phase.ABORTED, state.step, state.extensions, reason)


def abort(state: State, reason: str) -> State:
    if state.done:
        return state
    return State(Phase.ABORTED, state.step, state.extensions, reason)


def _clock_time(ts: float) -> str:
    return f"{dt.datetime.fromtimestamp(ts, dt.UTC):%H:%M:%S}"


def liveness_reason(health: Sequence[Health], at: float) -> str:
    """Why canary or baseline can no longer be judged or take traffic ("" when both can), in
    words: "canary process exited with status 1 at 10:15:07" (UTC, when it was noticed)."""
    when = _clock_time(at)
    for h in health:
        if not h.alive:
            return f"{h.track} process {procs.describe_exit(h.exit_status)} at {when} UTC"
    for h in health:
        if not h.ready:
            return f"{h.track} stopped being ready at {when} UTC: {h.detail}"
    return ""


def checks_reason(weight: int, failed: Sequence[Check]) -> str:
    """The abort reason when checks beside the judge fail a step ("" when none failed)."""
    if not failed:
        return ""
    return f"failed at {weight}%: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)


def after_step(state: State, judged: State, weight: int, failed: Sequence[Check]) -> State:
    """The judge's next state, overruled by any failed check beside it (probes, gateway,
    resources): a check's reason comes first, the judge's (if it failed too) after it."""
    reason = checks_reason(weight, failed)
    if not reason:
        return judged
    if judged.phase is Phase.ABORTED:
        reason = f"{reason}; {judged.reason}"
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


RECOVERED = "recovered: a previous deliver stopped mid-canary; the stale canary was aborted"


def redeploy_refusal(version: str, stable: str, history: Sequence[DeliveryView]) -> str:
    """Why `version` may not be delivered again ("" when it may): the fix is the next commit."""
    if version == stable:
        return f"{version} is already stable"
    for d in history:
        if d.subject.version == version and d.outcome in {Outcome.ABORTED, Outcome.PROMOTED}:
            return (
                f"{version} was already delivered ({d.outcome} in {d.delivery_id}): "
                "versions are never redeployed; the fix is the next commit"
            )
    return ""


# --- the run (effects) ------------------------------------------------------------------------


class Stopped(Exception):  # noqa: N818 - a stop request, not an error
    """Raised into a delivery where it is `stoppable` (the CLI's SIGTERM/SIGINT handler)."""


@dataclass(frozen=True)
class RunRequest:
    version: str  # what the user typed; for --platform, the platform commit being applied
    allows: tuple[Allow, ...] = ()
    reason: str = ""
    fixes: str = ""
    backward: Override | None = None  # --allow-backward: deliver a commit not ahead of stable


class Dead(Exception):  # noqa: N818 - an observation, not a bug
    """Canary or baseline exited or stopped being ready: the delivery aborts at once."""


Forward = Callable[[str | None, str | None, Override | None], ForwardDecision]


@dataclass(frozen=True)
class Witnesses:
    """What the canary phase reads beside the metrics: the probes and the step checks (the
    real ones by default; tests pass fakes)."""

    preflight: Callable[..., tuple[ProbeReport, Tolerance]] = probes.preflight
    probe_step: Callable[..., ProbeReport] = probes.probe_step
    snapshot: Callable[[Endpoints], Snapshot] = field(
        default=lambda e: step_checks.snapshot(
            {"canary": e.canary, "baseline": e.baseline}, e.gateway_metrics, "image"
        )
    )


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    reason: str
    record: Finished | None = None  # None when nothing was recorded
    verdicts: tuple[Verdict, ...] = ()
    error: str = ""  # an error, not a verdict, ended the delivery


@dataclass
class _Canary:
    """What the canary phase has gathered so far; kept when an error cuts it short."""

    checks: tuple[Check, ...] = ()
    steps: list[StepResult] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    state: State = IDLE
    error: str = ""  # an error, not a verdict, cut it short
    endpoints: Endpoints | None = None
    tolerance: Tolerance | None = None  # the probes' pixel bound, from the preflight
    since: Snapshot | None = None  # the witnesses when the canary started (weight 0)


@dataclass(frozen=True)
class CanaryRun:
    """What `Delivery.run_canary` did: the final state and what was gathered on the way."""

    state: State
    checks: tuple[Check, ...]
    steps: tuple[StepResult, ...]
    verdicts: tuple[Verdict, ...]
    error: str = ""  # an error, not a verdict, ended it
    stopped: bool = False  # an operator's stop (a signal) ended it

    @property
    def promoted(self) -> bool:
        return self.state.phase is Phase.PROMOTED

    @property
    def steps_passed(self) -> int:
        """Steps the canary got past: every one when promoted, else those before its last."""
        return self.state.step + 1 if self.promoted else self.state.step


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def _stamp(ts: float) -> str:
    return f"{dt.datetime.fromtimestamp(ts, dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def converge(target: Target, ledger: Ledger, env: str, clock: Callable[[], float]) -> list[str]:
    """Abort a canary a dead `deliver` left behind, and close its ledger entries."""
    state = target.state()
    stale = [d for d in deliveries(ledger.read().records, env) if d.finished is None]
    plan = recover(state.canary_version, state.canary_weight, [d.delivery_id for d in stale])
    notes: list[str] = []
    if plan.abort_target:
        target.abort()
        notes.append(
            f"aborted a stale canary {state.canary_version or '?'} at {state.canary_weight}%"
        )
    now = iso(clock())
    by_id = {d.delivery_id: d for d in stale}
    for did in plan.close:
        view = by_id[did]
        ledger.append(
            Finished(did, env, now, view.subject, now, Outcome.ABORTED, RECOVERED, steps=view.steps)
        )
        notes.append(f"closed delivery {did} ({view.subject.version}) as aborted")
    if plan.record_orphan:
        subject = Subject(version=state.canary_version, started_at=now)
        reason = RECOVERED + " (no ledger entry had been written)"
        orphan = f"{env}-orphan-{_stamp(clock())}"
        ledger.append(Finished(orphan, env, now, subject, now, Outcome.ABORTED, reason))
    return notes


class Delivery:
    def __init__(  # noqa: PLR0913  each parameter is an injected dependency
        self,
        cfg: DeliveryConfig,
        target: Target,
        metrics: MetricsSource,
        ledger: Ledger,
        policy: JudgePolicy,
        printer: Printer,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        stoppable: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        forward: Forward | None = None,
        witnesses: Witnesses | None = None,
    ) -> None:
        self.cfg = cfg
        self.target = target
        self.metrics = metrics
        self.ledger = ledger
        # The judge spends one delivery's budget over every step and extension (ADR 101).
        self.policy = policy.for_delivery(steps=len(cfg.steps), max_extensions=cfg.max_extensions)
        self.out = printer
        self.clock = clock
        self.sleep = sleep
        self.stoppable = stoppable
        self.forward = forward  # None: ancestry is not checked (no repository to ask)
        self.witnesses = witnesses or Witnesses()
        self.checks_policy = ChecksPolicy.from_mapping(cfg.checks)

    # --- the shared prologue and epilogue -------------------------------------------------
    def _begin(self, change: Change) -> tuple[str, TargetState]:
        """Converge what a dead run left, then a new delivery id and what the target runs."""
        for note in converge(self.target, self.ledger, self.cfg.env, self.clock):
            self.out.say(f"recovery: {note}")
        kind = "" if change is Change.SERVICE else f"{change}-"
        return f"{self.cfg.env}-{kind}{_stamp(self.clock())}", self.target.state()

    def _gate(
        self, did: str, subject: Subject, preview: Preview, req: RunRequest
    ) -> tuple[Subject, GateDecision] | RunResult:
        """The delta gate's decision, printed; a refusal is recorded and ends the delivery."""
        intended = ChangeKind.SERVICE if subject.change is Change.SERVICE else ChangeKind.PLATFORM
        decision = gate(
            preview, self.cfg.delta, intended=intended, allows=req.allows, reason=req.reason
        )
        self.out.say(
            f"delta gate: {'allowed' if decision.allowed else 'REFUSED'} - {decision.kind} change, "
            f"{decision.changes} resource(s), risk {decision.risk:.1f}"
        )
        for why in decision.reasons:
            self.out.say(f"  refused: {why}")
        overrides = tuple(f"{o.allow}: {o.reason}" for o in decision.overrides)
        subject = replace(subject, delta=decision.to_json(), overrides=overrides)
        if not decision.allowed:
            return self._finish(did, subject, Outcome.REFUSED, "; ".join(decision.reasons))
        return subject, decision

    def _finish(
        self,
        did: str,
        subject: Subject,
        outcome: Outcome,
        reason: str,
        canary: _Canary | None = None,
    ) -> RunResult:
        canary = canary or _Canary()
        now = iso(self.clock())
        record = Finished(
            did,
            self.cfg.env,
            now,
            subject,
            ended_at=now,
            outcome=outcome,
            reason=reason,
            error=canary.error,
            checks=canary.checks,
            steps=tuple(canary.steps),
        )
        self.ledger.append(record)
        return RunResult(outcome, reason, record, tuple(canary.verdicts), canary.error)

    # --- a platform change ----------------------------------------------------------------
    def run_platform(self, req: RunRequest) -> RunResult:
        """Platform code alone: preview, gate, apply. No canary: the service version does not
        change, so there is nothing to compare."""
        did, state = self._begin(Change.PLATFORM)
        if state.canary_running:
            reason = f"a canary ({state.canary_version}) runs: platform changes wait for it"
            return RunResult(Outcome.REFUSED, reason)
        subject = Subject(
            version=f"platform@{req.version[:12] or state.stable_version}",
            commit=req.version,
            stable_version=state.stable_version,
            target=self.cfg.target_kind,
            change=Change.PLATFORM,
            started_at=iso(self.clock()),
        )
        gated = self._gate(did, subject, self.target.preview_platform(), req)
        if isinstance(gated, RunResult):
            return gated
        subject, decision = gated
        if decision.kind is ChangeKind.NONE:
            return RunResult(Outcome.APPLIED, "no platform change to apply")
        self.target.apply_platform()
        return self._finish(did, subject, Outcome.APPLIED, "platform change applied")

    # --- a service version, as a canary ---------------------------------------------------
    def run(self, req: RunRequest) -> RunResult:
        did, state = self._begin(Change.SERVICE)
        info = self.target.resolve(req.version)
        stable = state.stable_version
        subject = Subject(
            version=info.version,
            commit=info.commit,
            commit_time=info.commit_time,
            stable_version=stable,
            target=self.cfg.target_kind,
            fixes=req.fixes,
            started_at=iso(self.clock()),
            planned=tuple(PlannedStep(s.weight, s.bake_seconds) for s in self.cfg.steps),
        )
        self.out.say(f"deliver {info.version} to {self.cfg.env} (stable {stable or 'none'})")
        history = deliveries(self.ledger.read().records, self.cfg.env)
        refusal = redeploy_refusal(info.version, stable, history)
        if refusal:
            return self._finish(did, subject, Outcome.REFUSED, refusal)
        backward: tuple[str, ...] = ()
        if self.forward is not None:
            fwd = self.forward(info.commit or None, stable_commit(history, stable), req.backward)
            self.out.say(f"ancestry: {'ok' if fwd.allowed else 'REFUSED'} - {fwd.reason}")
            if not fwd.allowed:
                return self._finish(did, subject, Outcome.REFUSED, fwd.reason)
            if fwd.override is not None:
                backward = (f"allow-backward: {json.dumps(fwd.record(), sort_keys=True)}",)
        gated = self._gate(did, subject, self.target.preview(info), req)
        if isinstance(gated, RunResult):
            return gated
        subject = replace(gated[0], overrides=(*gated[0].overrides, *backward))
        self.ledger.append(Started(did, self.cfg.env, iso(self.clock()), subject))

        canary = _Canary()
        try:
            with self.stoppable():
                self._canary(did, info, stable, canary)
        except (Stopped, Dead) as exc:
            canary.state = abort(canary.state, str(exc))
        except Exception as exc:  # any failure mid-canary: stable is safe, remove the canary
            canary.error = f"error: {type(exc).__name__}: {exc}"
            canary.state = abort(canary.state, canary.error)
        if canary.state.phase is Phase.PROMOTED:
            self.out.say(f"promoting {info.version}: stable := {info.version}")
            self.target.promote()
            return self._finish(did, subject, Outcome.PROMOTED, canary.state.reason, canary)
        self.out.say(f"aborting {info.version}: {canary.state.reason}")
        self.target.abort()
        return self._finish(did, subject, Outcome.ABORTED, canary.state.reason, canary)

    def run_canary(self, did: str, info: VersionInfo, stable: str) -> "CanaryRun":
        """The canary phase alone, for a caller that owns the delivery's records (a rollout
        across cells, delivery.waves): start, checks, steps, then promote or abort. Nothing is
        refused or gated here and no started/finished record is written; step records are.
        An operator's stop (`Stopped`) aborts the canary and says so (`stopped`): it is not a
        failure of the version."""
        canary = _Canary()
        stopped = False
        try:
            with self.stoppable():
                self._canary(did, info, stable, canary)
        except Stopped as exc:
            canary.state, stopped = abort(canary.state, str(exc)), True
        except Dead as exc:
            canary.state = abort(canary.state, str(exc))
        except Exception as exc:  # any failure mid-canary: stable is safe, remove the canary
            canary.error = f"error: {type(exc).__name__}: {exc}"
            canary.state = abort(canary.state, canary.error)
        if canary.state.phase is Phase.PROMOTED:
            self.out.say(f"promoting {info.version}: stable := {info.version}")
            self.target.promote()
        else:
            self.out.say(f"aborting {info.version}: {canary.state.reason}")
            self.target.abort()
        return CanaryRun(
            canary.state,
            canary.checks,
            tuple(canary.steps),
            tuple(canary.verdicts),
            canary.error,
            stopped,
        )

    def _canary(self, did: str, info: VersionInfo, stable: str, canary: _Canary) -> None:
        """Start the canary, check it, then walk the steps until the machine says done."""
        self.out.say(f"starting canary {info.version} and a fresh baseline of {stable} at 0%")
        self.target.start_canary(info)
        canary.state = start(IDLE)
        canary.checks = tuple(self.target.post_deploy_checks())
        if not any(not c.passed for c in canary.checks):
            canary.checks += self._first_probes(did, canary)
        for c in canary.checks:
            self.out.say(f"  check {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        failed = [f"{c.name} ({c.detail})" for c in canary.checks if not c.passed]
        canary.state = after_checks(canary.state, failed)
        step_started = 0.0
        start_snap: Snapshot | None = None
        while canary.state.phase is Phase.CANARY:
            state = canary.state
            step = self.cfg.steps[state.step]
            if state.extensions == 0:
                # The weight never rises onto a backend that is not ready.
                self._alive()
                self.target.set_weight(step.weight)
                step_started = self.clock()
                start_snap = self._snapshot(canary)
                deadline = step_started + step.bake_seconds
            else:
                deadline = self.clock() + self.cfg.extension_seconds
            looks = look_schedule(
                step.bake_seconds, self.cfg.interval_seconds, self.policy.interim_looks
            )
            schedule = looks if state.extensions == 0 else ()
            early = self._bake(state, step_started, deadline, info, stable, schedule)
            last = state.extensions >= self.cfg.max_extensions
            verdict, metrics_error = early or self._judge(
                step_started, info, stable, interim=False, at_limit=last
            )
            self._alive()  # a process that died at the very end is named, not judged
            checks = self._step_checks(did, state, canary, start_snap)
            ended = self.clock()
            result = StepResult(
                step=state.step,
                weight=step.weight,
                started_at=iso(step_started),
                ended_at=iso(ended),
                duration_seconds=round(ended - step_started, 2),
                bake_seconds=step.bake_seconds,
                extensions=state.extensions,
                verdict=verdict.to_json(),
                metrics_error=metrics_error,
                checks=checks,
            )
            canary.steps.append(result)
            canary.verdicts.append(verdict)
            self.ledger.append(StepRecord(did, self.cfg.env, iso(ended), info.version, result))
            self.out.say(verdict.render_table())
            for c in checks:
                self.out.say(f"  check {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
            if metrics_error:
                self.out.say(f"metrics unavailable: {metrics_error}")
            look = Look(verdict.outcome, step.weight, tuple(verdict.reasons), metrics_error)
            judged = after_verdict(
                state, look, steps=len(self.cfg.steps), max_extensions=self.cfg.max_extensions
            )
            canary.state = after_step(
                state, judged, step.weight, [c for c in checks if not c.passed]
            )

    # --- beside the judge: liveness, probes, gateway and resources ------------------------
    def _alive(self) -> None:
        reason = liveness_reason(self.target.health(), self.clock())
        if reason:
            raise Dead(reason)

    def _probe_tenant(self, ends: Endpoints) -> ProbeTenant:
        return ProbeTenant(ends.tenant, ends.api_key)

    def _first_probes(self, did: str, canary: _Canary) -> tuple[Check, ...]:
        """Stable against baseline (the noise floor), then canary against baseline, before any
        traffic shifts; also the witnesses' first snapshot."""
        ends = canary.endpoints = self.target.endpoints()
        if ends is None:
            self.out.say("  note: golden probes and resource checks skipped: no per-track URLs")
            return ()
        tenant = self._probe_tenant(ends)
        pre, tol = self.witnesses.preflight(ends.stable, ends.baseline, tenant, run_id=f"{did}-pre")
        canary.tolerance = tol
        if not pre.passed:
            self.out.say(pre.text())
            detail = (
                f"stable and a fresh baseline of it differ, the probes cannot judge: {pre.reason()}"
            )
            return (Check("golden probes", False, detail),)
        report = self.witnesses.probe_step(
            ends.canary, ends.baseline, tenant, run_id=f"{did}-0", tolerance=tol
        )
        if not report.passed:
            self.out.say(report.text())
        canary.since = self._snapshot(canary)
        return (Check("golden probes", report.passed, report.reason()),)

    def _snapshot(self, canary: _Canary) -> Snapshot | None:
        return None if canary.endpoints is None else self.witnesses.snapshot(canary.endpoints)

    def _step_checks(
        self, did: str, state: State, canary: _Canary, start_snap: Snapshot | None
    ) -> tuple[Check, ...]:
        ends = canary.endpoints
        if ends is None or canary.tolerance is None:
            return ()
        out: list[Check] = []
        end_snap = self._snapshot(canary)
        if end_snap is not None and start_snap is not None:
            since = canary.since or start_snap
            found = step_checks.evaluate(since, start_snap, end_snap, self.checks_policy)
            out += [Check(r.name, r.passed, r.detail) for r in found]
            for note in (*start_snap.notes, *end_snap.notes):
                self.out.say(f"  note: {note}")
        report = self.witnesses.probe_step(
            ends.canary,
            ends.baseline,
            self._probe_tenant(ends),
            run_id=f"{did}-{state.step + 1}-{state.extensions}",
            tolerance=canary.tolerance,
        )
        if not report.passed:
            self.out.say(report.text())
        out.append(Check("golden probes", report.passed, report.reason()))
        return tuple(out)

    def _judge(
        self, start: float, info: VersionInfo, stable: str, *, interim: bool, at_limit: bool = False
    ) -> tuple[Verdict, str]:
        window = Window(start, self.clock(), self.cfg.interval_seconds, info.version, stable)
        try:
            observation, error = self.metrics.observe(window), ""
        except MetricsUnavailableError as exc:
            observation, error = empty_observation(self.cfg.interval_seconds), str(exc)
        return judge(observation, self.policy, interim=interim, at_limit=at_limit), error

    def _bake(
        self,
        state: State,
        window_start: float,
        deadline: float,
        info: VersionInfo,
        stable: str,
        schedule: tuple[float, ...] = (),
    ) -> tuple[Verdict, str] | None:
        """Wait out the bake with live progress; an interim look (at `schedule`'s seconds into
        the step, judge_policy.look_schedule) may fail the step early."""
        looks = 0
        running = "waiting for data"
        canary_n = baseline_n = 0.0
        while (left := deadline - self.clock()) > 0:
            self.out.live(
                progress_line(
                    step=state.step,
                    steps=len(self.cfg.steps),
                    weight=self.cfg.steps[state.step].weight,
                    left=left,
                    extension=state.extensions,
                    running=running,
                    canary_n=canary_n,
                    baseline_n=baseline_n,
                )
            )
            self.sleep(min(self.cfg.progress_seconds, left))
            self._alive()
            if looks >= len(schedule) or self.clock() - window_start < schedule[looks]:
                continue
            if deadline - self.clock() <= 0:
                break
            looks += 1
            verdict, error = self._judge(window_start, info, stable, interim=True)
            score = "n/a" if verdict.score is None else f"{verdict.score:.0f}"
            running = "no metrics" if error else f"{verdict.outcome} (score {score})"
            aggregate = [r for r in verdict.evidence if r.scope == "aggregate"]
            if aggregate:
                canary_n, baseline_n = aggregate[0].canary_n, aggregate[0].baseline_n
            # Stop early on evidence of harm, or on a dead metrics backend; an interim look
            # whose only problem is too little data so far must not abort a good canary.
            harm = any(r.result == "fail" and r.p_value is not None for r in verdict.evidence)
            if error or (verdict.outcome == "fail" and harm):
                self.out.say(f"interim look {looks}: fail - stopping the bake early")
                if error:
                    return verdict, error
                # The step ends here, so its one final look is taken now: same data, the final
                # look's larger alpha, so the per-tenant rows explain the failure fully.
                final, error = self._judge(window_start, info, stable, interim=False)
                return (final, error) if final.outcome == "fail" else (verdict, error)
        return None
