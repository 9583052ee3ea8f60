"""`deliver run` as a short loop over the state machine, with every effect at the edges.

recover -> resolve -> refuse redeploys -> preview -> delta gate -> canary + fresh baseline at
weight 0 -> post-deploy checks -> for each step: set weight, bake (live progress, interim looks
may fail early), judge the step's window -> promote or abort -> ledger.
"""

import datetime as dt
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from delivery import machine
from delivery.config import DeliveryConfig
from delivery.delta import Allow, ChangeKind, GateDecision, gate
from delivery.judge import JudgePolicy, Verdict, judge, look_schedule
from delivery.ledger import SCHEMA_VERSION, Ledger, deliveries, open_deliveries
from delivery.metrics import MetricsSource, MetricsUnavailableError, Window, empty_observation
from delivery.observation import StepObservation
from delivery.outcome import Outcome
from delivery.progress import Printer, progress_line
from delivery.target import Target, VersionInfo

# Fields of an open delivery's folded view that its recovery record sets anew.
RECOVERY_DROP = frozenset(
    {"kind", "recorded_at", "schema_version", "delivery_id", "outcome", "reason", "ended_at"}
)


@dataclass(frozen=True)
class RunRequest:
    version: str
    allows: tuple[Allow, ...] = ()
    reason: str = ""
    fixes: str = ""


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    reason: str
    record: Mapping[str, Any] = field(default_factory=dict)
    verdicts: tuple[Verdict, ...] = ()


class Stopped(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM/SIGINT (e.g. `deliver abort`): abort the canary and record it."""


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def count(observation: StepObservation, track: str) -> float:
    series = observation.canary if track == "canary" else observation.baseline
    return sum(i.requests for intervals in series.tenants.values() for i in intervals)


class Delivery:
    def __init__(
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

    def record(self, kind: str, delivery_id: str, **fields: Any) -> dict[str, Any]:
        rec = {
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "delivery_id": delivery_id,
            "env": self.cfg.env,
            "recorded_at": iso(self.clock()),
            **fields,
        }
        self.ledger.append(rec)
        return rec

    # --- crash recovery --------------------------------------------------------------------
    def converge(self) -> list[str]:
        """Abort a canary a dead `deliver` left behind, and close its ledger entry."""
        state = self.target.state()
        read = self.ledger.read()
        stale = open_deliveries(read.records, self.cfg.env)
        plan = machine.recover(
            state.canary_version, state.canary_weight, [d["delivery_id"] for d in stale]
        )
        notes: list[str] = []
        if not plan.needed:
            return notes
        if plan.abort_target:
            self.target.abort()
            notes.append(
                f"aborted a stale canary {state.canary_version or '?'} at {state.canary_weight}%"
            )
        now = iso(self.clock())
        reason = "recovered: a previous deliver stopped mid-canary; the stale canary was aborted"
        for d in stale:
            self.record(
                "finished",
                d["delivery_id"],
                **{k: v for k, v in d.items() if k not in RECOVERY_DROP},
                ended_at=now,
                outcome="aborted",
                reason=reason,
            )
            notes.append(f"closed delivery {d['delivery_id']} ({d.get('version')}) as aborted")
        if plan.record_orphan:
            self.record(
                "finished",
                f"orphan-{uuid.uuid4().hex[:8]}",
                version=state.canary_version,
                started_at=now,
                ended_at=now,
                outcome="aborted",
                reason=reason + " (no ledger entry had been written)",
                steps=[],
            )
        return notes

    # --- policy refusals -------------------------------------------------------------------
    def redeploy_refusal(self, info: VersionInfo, stable: str) -> str:
        if info.version == stable:
            return f"{info.version} is already stable"
        for d in deliveries(self.ledger.read().records, self.cfg.env):
            if d.get("version") == info.version and d.get("outcome") in {"aborted", "promoted"}:
                return (
                    f"{info.version} was already delivered ({d['outcome']} in "
                    f"{d['delivery_id']}): versions are never redeployed; "
                    "the fix is the next commit"
                )
        return ""

    def _report_gate(
        self, decision: GateDecision, did: str, base: dict[str, Any]
    ) -> RunResult | None:
        """Print the delta gate's decision; a refusal is recorded and ends the delivery."""
        self.out.say(
            f"delta gate: {'allowed' if decision.allowed else 'REFUSED'} - {decision.kind} change, "
            f"{decision.changes} resource(s), risk {decision.risk:.1f}"
        )
        for why in decision.reasons:
            self.out.say(f"  refused: {why}")
        if decision.allowed:
            return None
        reason = "; ".join(decision.reasons)
        rec = self.record(
            "finished",
            did,
            **{"steps": [], **base},
            ended_at=iso(self.clock()),
            outcome="refused",
            reason=reason,
        )
        return RunResult(Outcome.REFUSED, reason, rec)

    # --- a platform change ----------------------------------------------------------------
    def run_platform(self, req: RunRequest) -> RunResult:
        """One delivery of platform code alone: preview, gate, apply. No canary: the service
        version does not change, so there is nothing to compare."""
        for note in self.converge():
            self.out.say(f"recovery: {note}")
        stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        did = f"{self.cfg.env}-platform-{stamp}"
        state = self.target.state()
        if state.canary_running:
            reason = f"a canary ({state.canary_version}) runs: platform changes wait for it"
            return RunResult(Outcome.REFUSED, reason)
        preview = self.target.preview_platform()
        decision = gate(
            preview,
            self.cfg.delta,
            intended=ChangeKind.PLATFORM,
            allows=req.allows,
            reason=req.reason,
        )
        base: dict[str, Any] = {
            "version": f"platform@{req.version or state.stable_version}",
            "commit": req.version,
            "change": "platform",
            "target": self.cfg.target_kind,
            "started_at": iso(self.clock()),
            "delta": decision.to_json(),
            "overrides": [f"{o.allow}: {o.reason}" for o in decision.overrides],
            "steps": [],
        }
        refused = self._report_gate(decision, did, base)
        if refused is not None:
            return refused
        if decision.kind is ChangeKind.NONE:
            return RunResult(Outcome.PROMOTED, "no platform change to apply")
        self.target.apply_platform()
        rec = self.record(
            "finished",
            did,
            **base,
            ended_at=iso(self.clock()),
            outcome="applied",
            reason="platform change applied",
        )
        return RunResult(Outcome.PROMOTED, "platform change applied", rec)

    # --- the run ---------------------------------------------------------------------------
    def run(self, req: RunRequest) -> RunResult:
        for note in self.converge():
            self.out.say(f"recovery: {note}")
        did = f"{self.cfg.env}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        info = self.target.resolve(req.version)
        stable = self.target.state().stable_version
        base: dict[str, Any] = {
            "version": info.version,
            "commit": info.commit,
            "commit_time": info.commit_time,
            "stable_version": stable,
            "target": self.cfg.target_kind,
            "fixes": req.fixes,
            "started_at": iso(self.clock()),
        }
        self.out.say(f"deliver {info.version} to {self.cfg.env} (stable {stable or 'none'})")
        refusal = self.redeploy_refusal(info, stable)
        if refusal:
            rec = self.record(
                "finished",
                did,
                **base,
                ended_at=base["started_at"],
                outcome="refused",
                reason=refusal,
                steps=[],
            )
            return RunResult(Outcome.REFUSED, refusal, rec)

        preview = self.target.preview(info)
        decision = gate(
            preview,
            self.cfg.delta,
            intended=ChangeKind.SERVICE,
            allows=req.allows,
            reason=req.reason,
        )
        base["delta"] = decision.to_json()
        base["overrides"] = [o["allow"] + ": " + o["reason"] for o in base["delta"]["overrides"]]
        refused = self._report_gate(decision, did, base)
        if refused is not None:
            return refused

        self.record("started", did, **base, planned=[s.__dict__ for s in self.cfg.steps])
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def stop(signum: int, frame: FrameType | None) -> None:
            raise Stopped(f"stopped by signal {signal.Signals(signum).name}")

        for s in previous:
            signal.signal(s, stop)
        steps: list[dict[str, Any]] = []
        verdicts: list[Verdict] = []
        state = machine.IDLE
        error = ""
        try:
            state = self._canary(did, info, stable, steps, verdicts)
        except Stopped as exc:
            state = machine.abort(state, str(exc))
            error = str(exc)
        except Exception as exc:  # any failure mid-canary: stable is safe, remove the canary
            error = f"error: {type(exc).__name__}: {exc}"
            state = machine.abort(machine.State(machine.Phase.CANARY), error)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        checks = steps.pop(0)["checks"] if steps and "checks" in steps[0] else []
        if state.phase is machine.Phase.PROMOTED:
            self.out.say(f"promoting {info.version}: stable := {info.version}")
            self.target.promote()
        else:
            self.out.say(f"aborting {info.version}: {state.reason}")
            self.target.abort()
        outcome = "promoted" if state.phase is machine.Phase.PROMOTED else "aborted"
        rec = self.record(
            "finished",
            did,
            **base,
            ended_at=iso(self.clock()),
            outcome=outcome,
            reason=state.reason,
            checks=checks,
            steps=steps,
        )
        if error and not error.startswith("stopped"):
            return RunResult(Outcome.ERROR, error, rec, tuple(verdicts))
        result = Outcome.PROMOTED if outcome == "promoted" else Outcome.ABORTED
        return RunResult(result, state.reason, rec, tuple(verdicts))

    def _canary(
        self,
        did: str,
        info: VersionInfo,
        stable: str,
        steps: list[dict[str, Any]],
        verdicts: list[Verdict],
    ) -> machine.State:
        self.out.say(f"starting canary {info.version} and a fresh baseline of {stable} at 0%")
        self.target.start_canary(info)
        checks = self.target.post_deploy_checks()
        steps.append({"checks": [c.__dict__ for c in checks]})
        for c in checks:
            self.out.say(f"  check {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        state = machine.start(machine.IDLE)
        if not all(c.passed for c in checks):
            failed = ", ".join(c.name for c in checks if not c.passed)
            return machine.abort(state, f"post-deploy checks failed: {failed}")
        window_start = 0.0
        deadline = 0.0
        while state.phase is machine.Phase.CANARY:
            step = self.cfg.steps[state.step]
            if state.extensions == 0:
                self.target.set_weight(step.weight)
                window_start = self.clock()
                deadline = window_start + step.bake_seconds
                step_started = window_start
            else:
                deadline = self.clock() + self.cfg.extension_seconds
            looks = look_schedule(
                step.bake_seconds, self.cfg.interval_seconds, self.policy.interim_looks
            )
            early = self._bake(
                state,
                step.weight,
                window_start,
                deadline,
                info,
                stable,
                looks if state.extensions == 0 else (),
            )
            last = state.extensions >= self.cfg.max_extensions
            verdict, metrics_error = early or self._judge(
                window_start, info, stable, interim=False, at_limit=last
            )
            verdicts.append(verdict)
            ended = self.clock()
            steps.append(
                {
                    "step": state.step,
                    "weight": step.weight,
                    "started_at": iso(step_started),
                    "ended_at": iso(ended),
                    "duration_seconds": round(ended - step_started, 2),
                    "bake_seconds": step.bake_seconds,
                    "extensions": state.extensions,
                    "verdict": verdict.to_json(),
                    "metrics_error": metrics_error,
                }
            )
            self.record("step", did, version=info.version, **steps[-1])
            self.out.say(verdict.render_table())
            if metrics_error:
                self.out.say(f"metrics unavailable: {metrics_error}")
            state = machine.after_verdict(
                state,
                verdict.outcome,
                steps=len(self.cfg.steps),
                max_extensions=self.cfg.max_extensions,
            )
            if state.phase is machine.Phase.ABORTED and metrics_error:
                state = machine.State(
                    state.phase, state.step, state.extensions, f"no metrics: {metrics_error}"
                )
            elif state.phase is machine.Phase.ABORTED and verdict.outcome == "fail":
                detail = "; ".join(verdict.reasons[:3])
                state = machine.State(
                    state.phase,
                    state.step,
                    state.extensions,
                    f"the judge failed the canary at {step.weight}%: {detail}",
                )
        return state

    def _judge(
        self, start: float, info: VersionInfo, stable: str, *, interim: bool, at_limit: bool = False
    ) -> tuple[Verdict, str]:
        end = self.clock()
        window = Window(start, end, self.cfg.interval_seconds, info.version, stable)
        try:
            observation = self.metrics.observe(window)
            error = ""
        except MetricsUnavailableError as exc:
            observation, error = empty_observation(self.cfg.interval_seconds), str(exc)
        return judge(observation, self.policy, interim=interim, at_limit=at_limit), error

    def _bake(
        self,
        state: machine.State,
        weight: int,
        window_start: float,
        deadline: float,
        info: VersionInfo,
        stable: str,
        schedule: tuple[float, ...] = (),
    ) -> tuple[Verdict, str] | None:
        """Wait out the bake with live progress; an interim look (at `schedule`'s seconds into
        the step) may fail the step early."""
        looks = 0
        running = "waiting for data"
        canary_n = baseline_n = 0.0
        while (left := deadline - self.clock()) > 0:
            self.out.live(
                progress_line(
                    step=state.step,
                    steps=len(self.cfg.steps),
                    weight=weight,
                    left=left,
                    extension=state.extensions,
                    running=running,
                    canary_n=canary_n,
                    baseline_n=baseline_n,
                )
            )
            self.sleep(min(self.cfg.progress_seconds, left))
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
