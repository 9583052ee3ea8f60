"""PulumiTarget's logic around the Automation API, against a fake stack that records calls."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from delivery.config import PulumiSettings
from delivery.pulumi_target import (
    CANARY,
    STABLE,
    WEIGHT,
    PulumiTarget,
    ops_from_events,
    platform_stack_name,
)
from delivery.target import TargetError, VersionInfo
from pulumi.automation import events

URN = "urn:pulumi:staging::image-platform::image-platform:service:ImageServiceDeployment$"


def pre(op: events.OpType, type_: str, name: str) -> events.EngineEvent:
    meta = events.StepEventMetadata(op=op, urn=f"{URN}{type_}::{name}", type=type_, provider="")
    return events.EngineEvent(
        sequence=1, timestamp=0, resource_pre_event=events.ResourcePreEvent(metadata=meta)
    )


@dataclass
class PreviewResult:
    change_summary: dict[Any, int]


@dataclass
class FakeStack:
    config: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)

    def get_all_config(self) -> dict[str, Any]:
        return dict(self.config)

    def outputs(self) -> dict[str, Any]:
        return {k: type("O", (), {"value": v})() for k, v in self.exports.items()}

    def set_config(self, key: str, value: Any) -> None:
        self.calls.append(("set_config", (key, value.value)))
        self.config[key] = value

    def preview(self, **kwargs: Any) -> PreviewResult:
        self.calls.append(("preview", sorted(kwargs)))
        for event in (
            pre(events.OpType.CREATE, "kubernetes:apps/v1:Deployment", "canary"),
            pre(events.OpType.SAME, "kubernetes:apps/v1:Deployment", "stable"),
            events.EngineEvent(sequence=2, timestamp=0),  # not a resource event
        ):
            kwargs["on_event"](event)
        return PreviewResult({events.OpType.CREATE: 1, events.OpType.SAME: 1})

    def up(self, **kwargs: Any) -> None:
        self.calls.append(("up", kwargs.get("plan")))


V = VersionInfo("abc1234", "abc1234", "2026-01-01T00:00:00+00:00")


def target(tmp_path: Path, plan: bool = True) -> tuple[PulumiTarget, FakeStack]:
    stack = FakeStack()
    settings = PulumiSettings(stack="staging", use_update_plan=plan)
    return PulumiTarget(stack, settings, tmp_path, plan_dir=tmp_path), stack


def value(stack: FakeStack, key: str) -> str:
    return str(stack.config[key].value)


def test_preview_sets_version_at_zero_weight_and_collects_ops(tmp_path: Path) -> None:
    t, stack = target(tmp_path)
    preview = t.preview(V)
    assert [(o.type, o.op) for o in preview.ops] == [
        ("kubernetes:apps/v1:Deployment", "create"),
        ("kubernetes:apps/v1:Deployment", "same"),
    ]
    assert preview.change_summary == {"create": 1, "same": 1}
    assert stack.calls[:2] == [("set_config", (CANARY, "abc1234")), ("set_config", (WEIGHT, "0"))]
    assert stack.calls[2] == ("preview", ["on_event", "plan"])


def test_the_previewed_plan_is_applied_once_then_plain_ups(tmp_path: Path) -> None:
    t, stack = target(tmp_path)
    t.preview(V)
    t.start_canary(V)
    t.set_weight(25)
    ups = [arg for name, arg in stack.calls if name == "up"]
    assert ups == [str(tmp_path / "staging-abc1234.plan.json"), None]
    assert value(stack, WEIGHT) == "25"


def test_without_update_plans_no_plan_is_passed(tmp_path: Path) -> None:
    t, stack = target(tmp_path, plan=False)
    t.preview(V)
    t.start_canary(V)
    assert ("preview", ["on_event"]) in stack.calls
    assert [arg for name, arg in stack.calls if name == "up"] == [None]


def test_promote_moves_stable_and_clears_canary(tmp_path: Path) -> None:
    t, stack = target(tmp_path)
    t.start_canary(V)
    t.set_weight(50)
    t.promote()
    state = t.state()
    assert (state.stable_version, state.canary_version, state.canary_weight) == ("abc1234", "", 0)
    assert value(stack, STABLE) == "abc1234"


def test_abort_leaves_stable_untouched(tmp_path: Path) -> None:
    t, stack = target(tmp_path)
    stack.config[STABLE] = type("C", (), {"value": "old"})()
    t.start_canary(V)
    t.set_weight(25)
    t.abort()
    state = t.state()
    assert (state.stable_version, state.canary_version, state.canary_weight) == ("old", "", 0)
    assert not any(c == ("set_config", (STABLE, "abc1234")) for c in stack.calls)


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    t, _ = target(tmp_path)
    with pytest.raises(TargetError, match=r"outside 0\.\.50"):
        t.set_weight(60)
    with pytest.raises(TargetError, match="no canary to promote"):
        t.promote()
    with pytest.raises(TargetError, match="image tag"):
        t.resolve("bad tag;rm")


def test_kubectl_host_spec_and_event_parsing() -> None:
    t = PulumiTarget(FakeStack(), PulumiSettings(stack="prod", kube_context="eks-prod"), Path())
    assert t.kube_host_spec("image-canary-1") == (
        "kubectl://image-canary-1?namespace=image-service&container=image-service&context=eks-prod"
    )
    ops = ops_from_events([pre(events.OpType.CREATE_REPLACEMENT, "aws:s3/bucket:Bucket", "images")])
    assert ops[0].op == "replace"


def test_platform_preview_keeps_versions_and_applies_its_plan(tmp_path: Path) -> None:
    t, stack = target(tmp_path)
    preview = t.preview_platform()
    assert preview.change_summary == {"create": 1, "same": 1}
    assert not any(name == "set_config" for name, _ in stack.calls)
    t.apply_platform()
    assert stack.calls[-1] == ("up", str(tmp_path / "staging-platform.plan.json"))


def _ups_with(stack: FakeStack) -> list[tuple[str, str, str]]:
    """(stable, canary, weight) as each `up` saw them."""
    out, seen = [], {}
    for name, arg in stack.calls:
        if name == "set_config":
            seen[arg[0]] = arg[1]
        if name == "up":
            out.append((seen.get(STABLE, ""), seen.get(CANARY, ""), seen.get(WEIGHT, "")))
    return out


def test_promote_moves_traffic_only_between_ready_pods(tmp_path: Path) -> None:
    t, stack = target(tmp_path, plan=False)
    stack.exports = {"stableVersion": "old"}
    t.start_canary(V)
    t.set_weight(50)
    t.promote()
    assert _ups_with(stack) == [
        ("old", "abc1234", "0"),  # canary and baseline start, no traffic yet
        ("old", "abc1234", "50"),  # traffic to pods that are Ready
        ("abc1234", "abc1234", "50"),  # stable rolls to the new version, canary still serving
        ("abc1234", "abc1234", "0"),  # traffic leaves canary and baseline...
        ("abc1234", "", "0"),  # ...and only then do their pods stop
    ]


def test_abort_takes_traffic_away_before_the_pods(tmp_path: Path) -> None:
    t, stack = target(tmp_path, plan=False)
    stack.exports = {"stableVersion": "old"}
    t.start_canary(V)
    t.set_weight(10)
    t.abort()
    assert _ups_with(stack)[-2:] == [("old", "abc1234", "0"), ("old", "", "0")]


def test_the_stack_state_is_the_truth_not_the_checkout(tmp_path: Path) -> None:
    # A fresh CI checkout's stack file pins no version; the stack's exports hold them.
    t, stack = target(tmp_path)
    stack.exports = {"stableVersion": "9f8e7d6", "canaryVersion": "", "canaryWeight": 0}
    state = t.state()
    assert (state.stable_version, state.canary_version, state.canary_weight) == ("9f8e7d6", "", 0)


def test_platform_deliveries_drive_the_platform_stack(tmp_path: Path) -> None:
    service, platform = FakeStack(), FakeStack()
    settings = PulumiSettings(stack="staging-service", use_update_plan=False)
    t = PulumiTarget(service, settings, tmp_path, plan_dir=tmp_path, platform=platform)
    t.preview_platform()
    t.apply_platform()
    assert [c for c, _ in platform.calls] == ["preview", "up"]
    assert not [c for c, _ in service.calls if c in ("preview", "up")]
    assert platform_stack_name("staging-service") == "staging-platform"
    assert platform_stack_name("prod-service-eu1") == "prod-platform"
    with pytest.raises(TargetError, match="not a service stack"):
        platform_stack_name("prod")
