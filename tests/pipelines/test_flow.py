"""The delivery flow: its pure state machine and recovery decisions, then `deliver run` end to
end over fakes (a recording target, a scripted metrics source, a file ledger, a fake clock),
proving the control flow and what lands in the ledger."""

import contextlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from delivery.ancestry import Ancestry, ForwardDecision, Override, Relation, decide
from delivery.config import DeliveryConfig, Step
from delivery.delta import DeltaPolicy, Preview, ResourceOp
from delivery.flow import (
    IDLE,
    Delivery,
    Look,
    Phase,
    RunRequest,
    RunResult,
    State,
    Stopped,
    Witnesses,
    abort,
    after_checks,
    after_verdict,
    converge,
    liveness_reason,
    recover,
    start,
)
from delivery.judge import JudgePolicy
from delivery.ledger import SCHEMA_VERSION, Change, FileLedger, Outcome, deliveries, to_json
from delivery.metrics import MetricsUnavailableError, Window
from delivery.observation import Interval, StepObservation, TrackSeries
from delivery.probes import (
    DEFAULT_TOLERANCE,
    Answer,
    ProbeReport,
    ProbeResult,
    ProbeSpec,
    SentRequest,
    compare_all,
)
from delivery.progress import Printer
from delivery.step_checks import ServerSample, Snapshot, TrackSample
from delivery.target import Check, Endpoints, Health, TargetState, VersionInfo


def walk(outcomes: list[str], steps: int = 3, max_extensions: int = 1) -> list[State]:
    state = start(IDLE)
    seen = [state]
    for outcome in outcomes:
        look = Look(outcome, weight=10 * (state.step + 1), reasons=("error_ratio: +5 pp",))
        state = after_verdict(state, look, steps=steps, max_extensions=max_extensions)
        seen.append(state)
    return seen


def test_all_passes_walk_the_steps_then_promote() -> None:
    states = walk(["pass", "pass", "pass"])
    assert [(s.phase, s.step) for s in states] == [
        (Phase.CANARY, 0),
        (Phase.CANARY, 1),
        (Phase.CANARY, 2),
        (Phase.PROMOTED, 2),
    ]
    assert states[-1].done


def test_fail_aborts_at_that_step() -> None:
    final = walk(["pass", "fail"])[-1]
    assert (final.phase, final.step) == (Phase.ABORTED, 1)
    # The machine gives the whole reason: the step's weight and the judge's own reasons.
    assert final.reason == "the judge failed the canary at 20%: error_ratio: +5 pp"


def test_a_failed_look_without_metrics_says_so() -> None:
    look = Look("fail", 10, ("error_ratio: missing",), metrics_error="Prometheus unreachable")
    final = after_verdict(start(IDLE), look, steps=2, max_extensions=2)
    assert (final.phase, final.reason) == (Phase.ABORTED, "no metrics: Prometheus unreachable")


def test_failed_checks_abort_before_any_step() -> None:
    state = after_checks(start(IDLE), ["runs as non-root", "loads its own libvips"])
    assert state.phase is Phase.ABORTED
    assert state.reason == "post-deploy checks failed: runs as non-root, loads its own libvips"
    assert after_checks(start(IDLE), []) == start(IDLE)


def test_inconclusive_extends_up_to_the_limit_then_aborts() -> None:
    states = walk(["inconclusive", "inconclusive"], max_extensions=1)
    assert (states[1].phase, states[1].step, states[1].extensions) == (Phase.CANARY, 0, 1)
    assert states[2].phase is Phase.ABORTED
    assert "inconclusive after 1" in states[2].reason


def test_inconclusive_then_pass_moves_on_and_resets_extensions() -> None:
    states = walk(["inconclusive", "pass"])
    assert (states[2].phase, states[2].step, states[2].extensions) == (Phase.CANARY, 1, 0)


def test_bad_transitions_are_errors() -> None:
    with pytest.raises(ValueError, match="cannot start"):
        start(State(Phase.CANARY))
    with pytest.raises(ValueError, match="no verdict is expected"):
        after_verdict(IDLE, Look("pass", 10), steps=1, max_extensions=0)
    with pytest.raises(ValueError, match="unknown verdict outcome"):
        after_verdict(start(IDLE), Look("maybe", 10), steps=1, max_extensions=0)
    with pytest.raises(ValueError, match="no post-deploy checks"):
        after_checks(IDLE, [])


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


BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
TENANTS = ("acme", "globex", "initech")


def series(
    requests: float, error_ratio: float, slow: bool = False, tenant_errors: str = ""
) -> TrackSeries:
    def interval(tenant: str) -> Interval:
        ratio = error_ratio if not tenant_errors or tenant == tenant_errors else 0.0
        counts = [0.0] * (len(BOUNDS) + 1)
        counts[4 if slow else 1] = requests
        return Interval(requests=requests, errors=requests * ratio, latency_counts=tuple(counts))

    return TrackSeries(tenants={t: tuple(interval(t) for _ in range(5)) for t in TENANTS})


@dataclass
class FakeTarget:
    stable: str = "v1"
    canary: str = ""
    weight: int = 0
    calls: list[str] = field(default_factory=list)
    checks_pass: bool = True
    ops: tuple[ResourceOp, ...] = (ResourceOp("urn:c", "svc", "create"),)
    platform_ops: tuple[ResourceOp, ...] = ()
    urls: Endpoints | None = None
    # What health() answers, one entry per call; the last one repeats.
    healths: list[tuple[Health, ...]] = field(default_factory=lambda: [()])

    def resolve(self, version: str) -> VersionInfo:
        return VersionInfo(version, "c0ffee" + version, "2026-01-01T00:00:00+00:00")

    def state(self) -> TargetState:
        return TargetState(self.stable, self.canary, self.weight)

    def preview(self, version: VersionInfo) -> Preview:
        self.calls.append("preview")
        return Preview(ops=self.ops)

    def preview_platform(self) -> Preview:
        self.calls.append("preview platform")
        return Preview(ops=self.platform_ops)

    def apply_platform(self) -> None:
        self.calls.append("apply platform")

    def start_canary(self, version: VersionInfo) -> None:
        self.calls.append(f"start {version.version}")
        self.canary = version.version

    def post_deploy_checks(self) -> list[Check]:
        return [Check("runs as non-root", self.checks_pass, "uid 65534")]

    def set_weight(self, weight: int) -> None:
        self.calls.append(f"weight {weight}")
        self.weight = weight

    def promote(self) -> None:
        self.calls.append("promote")
        self.stable, self.canary, self.weight = self.canary, "", 0

    def abort(self) -> None:
        self.calls.append("abort")
        self.canary, self.weight = "", 0

    def metrics_url(self) -> str:
        return "http://fake"

    def endpoints(self) -> Endpoints | None:
        return self.urls

    def health(self) -> tuple[Health, ...]:
        return self.healths.pop(0) if len(self.healths) > 1 else self.healths[0]


@dataclass
class ScriptedMetrics:
    canary: TrackSeries
    baseline: TrackSeries
    down: bool = False
    windows: list[Window] = field(default_factory=list)

    def observe(self, window: Window) -> StepObservation:
        self.windows.append(window)
        if self.down:
            raise MetricsUnavailableError("Prometheus at http://fake is unreachable: refused")
        return StepObservation(BOUNDS, 2.0, self.canary, self.baseline)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def config() -> DeliveryConfig:
    return DeliveryConfig(
        env="t",
        target_kind="local",
        steps=(Step(10, 10), Step(50, 10)),
        interval_seconds=2,
        max_extensions=1,
        extension_seconds=4,
        progress_seconds=2,
        prometheus_url="",
        ledger="",
        delta=DeltaPolicy(5, 10, {}, {}, (), ("svc",)),
        judge={},
        local=None,
        pulumi=None,
    )


def delivery(
    tmp_path: Path, target: FakeTarget, metrics: ScriptedMetrics
) -> tuple[Delivery, FileLedger, io.StringIO]:
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    out = io.StringIO()
    clock = Clock()
    d = Delivery(
        config(),
        target,
        metrics,
        ledger,
        JudgePolicy(min_requests=100, interim_looks=2),
        Printer(out),
        clock=clock,
        sleep=clock.sleep,
    )
    return d, ledger, out


def stored(result: RunResult) -> dict[str, Any]:
    """The delivery's `finished` record as the ledger stores it."""
    assert result.record is not None
    return to_json(result.record)


def healthy() -> ScriptedMetrics:
    return ScriptedMetrics(series(100, 0.0), series(100, 0.0))


def test_good_version_walks_every_step_and_is_promoted(tmp_path: Path) -> None:
    target = FakeTarget()
    d, ledger, out = delivery(tmp_path, target, healthy())
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.PROMOTED
    assert target.calls == ["preview", "start v2", "weight 10", "weight 50", "promote"]
    assert target.stable == "v2"
    rec = stored(result)
    assert rec["schema_version"] == SCHEMA_VERSION
    assert rec["outcome"] == "promoted"
    assert [s["weight"] for s in rec["steps"]] == [10, 50]
    assert rec["steps"][0]["verdict"]["outcome"] == "pass"
    assert rec["checks"][0]["passed"] is True
    assert rec["delta"]["allowed"] is True
    assert "[step 1/2] weight 10%" in out.getvalue()
    kinds = [r["kind"] for r in ledger.read().records]
    assert kinds == ["started", "step", "step", "finished"]


def test_errors_on_the_canary_abort_at_the_first_step(tmp_path: Path) -> None:
    target = FakeTarget()
    d, _, _ = delivery(tmp_path, target, ScriptedMetrics(series(100, 0.2), series(100, 0.0)))
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert target.calls[-1] == "abort"
    assert "promote" not in target.calls
    assert target.stable == "v1"
    assert [s["weight"] for s in stored(result)["steps"]] == [10]
    assert "judge failed the canary at 10%" in stored(result)["reason"]
    step = stored(result)["steps"][0]
    # An interim look stopped the bake early; the step's final look was then taken on that data.
    assert step["duration_seconds"] < 10
    assert step["verdict"]["interim"] is False


def test_one_tenant_regression_is_named(tmp_path: Path) -> None:
    target = FakeTarget()
    metrics = ScriptedMetrics(series(100, 0.3, tenant_errors="globex"), series(100, 0.0))
    d, _, _ = delivery(tmp_path, target, metrics)
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    scopes = {
        row["scope"]
        for row in stored(result)["steps"][-1]["verdict"]["evidence"]
        if row["result"] == "fail"
    }
    assert "globex" in scopes


def test_metrics_outage_never_promotes_and_says_why(tmp_path: Path) -> None:
    metrics = healthy()
    metrics.down = True
    d, _, _ = delivery(tmp_path, FakeTarget(), metrics)
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert stored(result)["reason"].startswith(
        "no metrics: Prometheus at http://fake is unreachable"
    )


def test_too_few_requests_extends_then_aborts(tmp_path: Path) -> None:
    d, _, _ = delivery(tmp_path, FakeTarget(), ScriptedMetrics(series(1, 0.0), series(1, 0.0)))
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert [s["extensions"] for s in stored(result)["steps"]] == [0, 1]
    # At the bake's limit the judge fails in words (issue 12) instead of staying inconclusive.
    assert "not enough traffic to judge" in stored(result)["reason"]


def test_failed_post_deploy_check_aborts_before_any_traffic(tmp_path: Path) -> None:
    target = FakeTarget(checks_pass=False)
    d, _, _ = delivery(tmp_path, target, healthy())
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert not any(c.startswith("weight") for c in target.calls)
    assert "post-deploy checks failed: runs as non-root" in stored(result)["reason"]


def test_gate_refusal_and_redeploys_are_refused_and_recorded(tmp_path: Path) -> None:
    platform = FakeTarget(ops=(ResourceOp("urn:v", "aws:ec2/vpc:Vpc", "update"),))
    d, _, _ = delivery(tmp_path, platform, healthy())
    refused = d.run(RunRequest("v2"))
    assert refused.outcome is Outcome.REFUSED
    assert "platform change" in refused.reason
    assert "start v2" not in platform.calls

    target = FakeTarget()
    d, _, _ = delivery(tmp_path, target, ScriptedMetrics(series(100, 0.2), series(100, 0.0)))
    assert d.run(RunRequest("v3")).outcome is Outcome.ABORTED
    again = d.run(RunRequest("v3"))
    assert again.outcome is Outcome.REFUSED
    assert "never redeployed" in again.reason
    assert d.run(RunRequest("v1")).reason == "v1 is already stable"


def test_converge_aborts_a_stale_canary_and_closes_the_open_entry(tmp_path: Path) -> None:
    target = FakeTarget(canary="v2", weight=10)
    d, ledger, _ = delivery(tmp_path, target, healthy())
    ledger.append(
        {"schema_version": 1, "kind": "started", "delivery_id": "d1", "env": "t", "version": "v2"}
    )
    notes = converge(d.target, ledger, "t", d.clock)
    assert target.calls == ["abort"]
    assert any("stale canary v2" in n for n in notes)
    view = deliveries(ledger.read().records, "t")
    assert view[0].outcome is Outcome.ABORTED
    assert view[0].reason.startswith("recovered")
    assert view[0].subject.version == "v2"
    assert converge(d.target, ledger, "t", d.clock) == []  # converged: nothing left to do


def test_unexpected_error_mid_canary_aborts_and_reports_error(tmp_path: Path) -> None:
    class Broken(FakeTarget):
        def set_weight(self, weight: int) -> None:
            raise RuntimeError("runtime API gone")

    target = Broken()
    d, _, _ = delivery(tmp_path, target, healthy())
    result = d.run(RunRequest("v2"))
    # An error, not a verdict: the canary is aborted and the record says which error.
    assert result.outcome is Outcome.ABORTED
    assert result.error == "error: RuntimeError: runtime API gone"
    assert "runtime API gone" in result.reason
    assert target.calls[-1] == "abort"
    assert stored(result)["outcome"] == "aborted"
    assert stored(result)["error"] == result.error


def test_a_stop_mid_bake_aborts_and_records_why(tmp_path: Path) -> None:
    """The CLI turns SIGTERM into `Stopped` where the flow is stoppable (see test_cli)."""
    target = FakeTarget()
    d, ledger, _ = delivery(tmp_path, target, healthy())
    clock = Clock()
    armed: list[bool] = []

    @contextlib.contextmanager
    def stoppable() -> Iterator[None]:
        armed.append(True)
        yield
        armed.append(False)

    def sleep(seconds: float) -> None:  # `deliver abort` arrives during the first bake
        clock.sleep(seconds)
        assert armed == [True]  # the bake is a place where a stop may land
        raise Stopped("stopped by signal SIGTERM")

    d.clock, d.sleep, d.stoppable = clock, sleep, stoppable
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert result.error == ""
    assert stored(result)["reason"] == "stopped by signal SIGTERM"
    assert target.calls[-1] == "abort"
    assert armed == [True]  # left by the exception: promote/abort/record are never interrupted
    assert deliveries(ledger.read().records, "t")[-1].outcome is Outcome.ABORTED


def test_ids_and_times_come_from_the_injected_clock(tmp_path: Path) -> None:
    d, ledger, _ = delivery(tmp_path, FakeTarget(), healthy())
    result = d.run(RunRequest("v2"))
    assert result.record is not None
    assert result.record.delivery_id.startswith("t-20270115T080000-")
    assert result.record.subject.started_at == "2027-01-15T08:00:00+00:00"
    times = [r["recorded_at"] for r in ledger.read().records]
    assert times == sorted(times)
    assert all(t.startswith("2027-01-15T08:") for t in times)


def test_platform_change_is_its_own_delivery(tmp_path: Path) -> None:
    vpc = ResourceOp("urn:v", "aws:iam/role:Role", "update")
    target = FakeTarget(platform_ops=(vpc,))
    d, _, _ = delivery(tmp_path, target, healthy())
    commit = "9f3c2b1a" * 5
    result = d.run_platform(RunRequest(commit))
    assert result.outcome is Outcome.APPLIED
    assert target.calls == ["preview platform", "apply platform"]
    assert stored(result)["outcome"] == "applied"
    assert stored(result)["delta"]["kind"] == "platform"
    assert stored(result)["change"] == Change.PLATFORM
    assert stored(result)["commit"] == commit  # the platform commit it applied
    assert stored(result)["version"] == "platform@9f3c2b1a9f3c"

    nothing = FakeTarget()
    d, _, _ = delivery(tmp_path, nothing, healthy())
    assert d.run_platform(RunRequest("")).reason == "no platform change to apply"
    assert "apply platform" not in nothing.calls

    mixed = FakeTarget(platform_ops=(vpc, ResourceOp("urn:c", "svc", "update")))
    d, _, _ = delivery(tmp_path, mixed, healthy())
    refused = d.run_platform(RunRequest(""))
    assert refused.outcome is Outcome.REFUSED
    assert "mixes a platform change" in refused.reason


# --- beside the judge: liveness, ancestry, golden probes, step checks -----------------------
def test_liveness_reason_names_the_track_the_exit_and_the_time() -> None:
    at = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert liveness_reason([Health("baseline", True, True)], at) == ""
    exited = [Health("baseline", True, True), Health("canary", False, False, exit_status=1)]
    assert liveness_reason(exited, at) == "canary process exited with status 1 at 08:00:00 UTC"
    killed = [Health("canary", False, False, exit_status=-9)]
    assert liveness_reason(killed, at) == "canary process was killed by SIGKILL at 08:00:00 UTC"
    unready = [Health("baseline", True, False, detail="/readyz answered 503 draining")]
    assert liveness_reason(unready, at) == (
        "baseline stopped being ready at 08:00:00 UTC: /readyz answered 503 draining"
    )


def test_a_canary_that_exits_mid_step_aborts_at_once_and_the_weight_never_rises(
    tmp_path: Path,
) -> None:
    # Alive for the first step's checks and two progress ticks, then dead.
    dead = (Health("canary", False, False, exit_status=1), Health("baseline", True, True))
    target = FakeTarget(healths=[(), (), (), dead])
    d, _, _ = delivery(tmp_path, target, healthy())
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert not result.error  # an observation, not a pipeline error
    assert re.fullmatch(
        r"canary process exited with status 1 at \d\d:\d\d:\d\d UTC", result.reason
    ), result.reason
    assert target.calls == ["preview", "start v2", "weight 10", "abort"]


def test_the_weight_never_rises_onto_a_backend_that_is_not_ready(tmp_path: Path) -> None:
    unready = (Health("canary", True, True), Health("baseline", True, False, detail="503"))
    target = FakeTarget(healths=[unready])
    d, _, _ = delivery(tmp_path, target, healthy())
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert "baseline stopped being ready" in result.reason
    assert not any(c.startswith("weight") for c in target.calls)


def test_a_backward_commit_is_refused_unless_an_override_says_why(tmp_path: Path) -> None:
    seen: list[tuple[str | None, str | None]] = []

    def backward(c: str | None, s: str | None, o: Override | None) -> ForwardDecision:
        seen.append((c, s))
        facts = Ancestry(c, s or "5ab1e", Relation.BACKWARD, "1 commit (5ab1e fix)")
        return decide(facts, o)

    target = FakeTarget()
    d, _, _ = delivery(tmp_path, target, healthy())
    d.forward = backward
    refused = d.run(RunRequest("v2"))
    assert refused.outcome is Outcome.REFUSED
    assert "is an ancestor of stable's" in refused.reason
    assert "start v2" not in target.calls
    assert seen == [("c0ffeev2", None)]  # the ledger never promoted stable with a commit

    allowed = d.run(RunRequest("v3", backward=Override("revert a bad schema", "ana")))
    assert allowed.outcome is Outcome.PROMOTED
    (recorded,) = stored(allowed)["overrides"]
    assert recorded.startswith("allow-backward: ")
    assert json.loads(recorded.removeprefix("allow-backward: "))["override_by"] == "ana"


def _report(canary_status: int) -> ProbeReport:
    spec = ProbeSpec("thumb-png", "GET", "png")
    sent = SentRequest("GET", "/v1/acme/images/x?w=24")
    result = ProbeResult(spec, sent, Answer(canary_status), sent, Answer(200))
    return compare_all([result], DEFAULT_TOLERANCE)


ENDS = Endpoints("http://s", "http://b", "http://c", "acme", "k", "http://g/haproxy-metrics")


@dataclass
class FakeWitnesses:
    """Golden probes that answer as scripted per run id, and snapshots from a list."""

    failing_runs: set[str] = field(default_factory=set)
    runs: list[str] = field(default_factory=list)
    snaps: list[Snapshot] = field(default_factory=list)

    def preflight(self, stable: str, baseline: str, tenant: object, *, run_id: str) -> Any:
        self.runs.append(run_id)
        return _report(200), DEFAULT_TOLERANCE

    def probe_step(self, canary: str, baseline: str, tenant: object, **kw: Any) -> ProbeReport:
        self.runs.append(kw["run_id"])
        return _report(500 if kw["run_id"] in self.failing_runs else 200)

    def snapshot(self, ends: Endpoints) -> Snapshot:
        return self.snaps.pop(0) if len(self.snaps) > 1 else (self.snaps or [Snapshot()])[0]

    def witnesses(self) -> Witnesses:
        return Witnesses(self.preflight, self.probe_step, self.snapshot)


def test_golden_probes_run_before_traffic_and_after_every_step(tmp_path: Path) -> None:
    fake = FakeWitnesses()
    target = FakeTarget(urls=ENDS)
    d, _, _ = delivery(tmp_path, target, healthy())
    d.witnesses = fake.witnesses()
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.PROMOTED
    did = stored(result)["delivery_id"]
    assert fake.runs == [f"{did}-pre", f"{did}-0", f"{did}-1-0", f"{did}-2-0"]
    rec = stored(result)
    assert [c["name"] for c in rec["checks"]] == ["runs as non-root", "golden probes"]
    assert all(s["checks"][-1]["name"] == "golden probes" for s in rec["steps"])


def test_a_probe_difference_before_traffic_aborts_with_the_request(tmp_path: Path) -> None:
    target = FakeTarget(urls=ENDS)
    d, _, out = delivery(tmp_path, target, healthy())
    fake = FakeWitnesses()

    def first_fails(canary: str, baseline: str, tenant: object, **kw: Any) -> ProbeReport:
        fake.runs.append(kw["run_id"])
        return _report(500 if kw["run_id"].endswith("-0") else 200)

    d.witnesses = Witnesses(fake.preflight, first_fails, fake.snapshot)
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert result.reason.startswith("post-deploy checks failed: golden probes (1 of 1 golden")
    assert "thumb-png: status 500 != 200" in result.reason
    assert [c for c in target.calls if c.startswith("weight")] == []
    assert "GET /v1/acme/images/x?w=24" in out.getvalue()  # the request and both answers
    (probe,) = [c for c in stored(result)["checks"] if c["name"] == "golden probes"]
    assert "thumb-png: status 500 != 200" in probe["detail"]


def test_a_probe_difference_at_a_step_aborts_naming_the_probe(tmp_path: Path) -> None:
    target = FakeTarget(urls=ENDS)
    d, _, _ = delivery(tmp_path, target, healthy())
    fake = FakeWitnesses()

    def second_step_fails(canary: str, baseline: str, tenant: object, **kw: Any) -> ProbeReport:
        fake.runs.append(kw["run_id"])
        return _report(500 if kw["run_id"].endswith("-2-0") else 200)

    d.witnesses = Witnesses(fake.preflight, second_step_fails, fake.snapshot)
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert result.reason.startswith("failed at 50%: golden probes: 1 of 1 golden probes differ")
    assert "thumb-png: status 500 != 200" in result.reason
    assert "promote" not in target.calls


def _snap(rss_mb: float, canary_5xx: float, gw_5xx: float, gw_conn: float) -> Snapshot:
    mb = 1024 * 1024
    track = TrackSample(rss_bytes=rss_mb * mb, cpu_seconds=None, requests=0, errors_5xx=0)
    return Snapshot(
        tracks={
            "canary": replace(track, errors_5xx=canary_5xx),
            "baseline": replace(track, rss_bytes=50 * mb),
        },
        gateway={
            "canary": ServerSample(1000, gw_5xx, gw_conn, 0),
            "baseline": ServerSample(1000, 0, 0, 0),
        },
    )


def test_a_leak_fails_the_step_on_memory_growth(tmp_path: Path) -> None:
    target = FakeTarget(urls=ENDS)
    d, _, _ = delivery(tmp_path, target, healthy())
    fake = FakeWitnesses(snaps=[_snap(50, 0, 0, 0), _snap(50, 0, 0, 0), _snap(250, 0, 0, 0)])
    d.witnesses = fake.witnesses()
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert result.reason.startswith("failed at 10%: memory growth: RSS grew +200.0 MB")


def test_requests_the_canary_never_answered_fail_the_step(tmp_path: Path) -> None:
    target = FakeTarget(urls=ENDS)
    d, _, _ = delivery(tmp_path, target, healthy())
    # The gateway answered 7 5xx and 5 refused connections for the canary; it counted 2 itself.
    fake = FakeWitnesses(snaps=[_snap(50, 0, 0, 0), _snap(50, 0, 0, 0), _snap(50, 2, 7, 5)])
    d.witnesses = fake.witnesses()
    result = d.run(RunRequest("v2"))
    assert result.outcome is Outcome.ABORTED
    assert "gateway view: the gateway saw 7 5xx and 5 connection/response errors" in result.reason
