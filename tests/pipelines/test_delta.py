"""The delta gate over recorded `pulumi preview --json` fixtures and hand-made previews."""

import json
from pathlib import Path

import pytest
from delivery.delta import (
    Allow,
    ChangeKind,
    DeltaPolicy,
    Preview,
    ResourceOp,
    gate,
    preview_from_json,
    type_from_urn,
)

FIXTURES = Path(__file__).parent / "fixtures"
BUCKET = "aws:s3/bucket:Bucket"
DEP = "kubernetes:apps/v1:Deployment"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"

POLICY = DeltaPolicy(
    max_changes=10,
    max_risk=20,
    op_weights={"create": 1, "update": 1, "delete": 4, "replace": 6},
    type_weights={"aws:iam/rolePolicy:RolePolicy": 2},
    protected_types=(BUCKET, "aws:eks/nodeGroup:NodeGroup", "aws:kms/key:Key"),
    service_types=(DEP, ROUTE),
)


def load(name: str) -> Preview:
    return preview_from_json(json.loads((FIXTURES / name).read_text()))


def test_service_version_change_is_allowed_with_its_risk() -> None:
    decision = gate(load("preview_service_version.json"), POLICY, intended=ChangeKind.SERVICE)
    assert decision.allowed, decision.reasons
    assert decision.kind is ChangeKind.SERVICE
    assert decision.changes == 3
    assert decision.risk == 3.0
    assert decision.summary["same"] == 3


def test_mixed_platform_and_service_change_is_refused() -> None:
    decision = gate(load("preview_mixed.json"), POLICY, intended=ChangeKind.SERVICE)
    assert not decision.allowed
    assert decision.kind is ChangeKind.MIXED
    assert any("mixes a platform change" in r and "nodeGroup" in r for r in decision.reasons)


def test_replacing_a_protected_bucket_needs_allow() -> None:
    preview = load("preview_bucket_replace.json")
    refused = gate(preview, POLICY, intended=ChangeKind.PLATFORM)
    assert not refused.allowed
    assert any(f"--allow {BUCKET}:replace" in r for r in refused.reasons)
    # The three replacement steps count as one resource change.
    assert refused.changes == 2


def test_allow_with_reason_is_recorded_as_an_override() -> None:
    preview = load("preview_bucket_replace.json")
    allowed = gate(
        preview,
        POLICY,
        intended=ChangeKind.PLATFORM,
        allows=[Allow.parse(f"{BUCKET}:replace")],
        reason="rename per ticket OPS-12",
    )
    assert allowed.allowed, allowed.reasons
    assert [(o.allow, o.reason) for o in allowed.overrides] == [
        (f"{BUCKET}:replace", "rename per ticket OPS-12")
    ]


def test_allow_without_reason_is_refused() -> None:
    decision = gate(
        load("preview_bucket_replace.json"),
        POLICY,
        intended=ChangeKind.PLATFORM,
        allows=[Allow.parse(f"{BUCKET}:replace")],
        reason="  ",
    )
    assert not decision.allowed
    assert any("without --reason" in r for r in decision.reasons)


def test_allow_for_another_op_does_not_cover_replace() -> None:
    decision = gate(
        load("preview_bucket_replace.json"),
        POLICY,
        intended=ChangeKind.PLATFORM,
        allows=[Allow.parse(f"{BUCKET}:delete")],
        reason="wrong op",
    )
    assert not decision.allowed


def test_large_change_exceeds_count_and_risk_budgets_with_every_reason() -> None:
    decision = gate(load("preview_platform_large.json"), POLICY, intended=ChangeKind.PLATFORM)
    assert not decision.allowed
    assert decision.changes == 30
    assert decision.risk == 60.0  # 30 updates x type weight 2
    assert len(decision.reasons) == 2
    assert "budget for this environment is 10" in decision.reasons[0]
    assert "risk score 60.0 exceeds the budget 20.0" in decision.reasons[1]


def test_platform_preview_for_a_service_delivery_is_refused() -> None:
    preview = Preview(ops=(ResourceOp("urn:a", "aws:iam/role:Role", "update"),))
    decision = gate(preview, POLICY, intended=ChangeKind.SERVICE)
    assert not decision.allowed
    assert "service change but the preview is a platform change" in decision.reasons[0]


def test_no_change_is_allowed() -> None:
    preview = Preview(ops=(ResourceOp("urn:a", DEP, "same"),))
    decision = gate(preview, POLICY, intended=ChangeKind.SERVICE)
    assert decision.allowed
    assert decision.kind is ChangeKind.NONE
    assert decision.to_json()["changes"] == 0


@pytest.mark.parametrize("text", ["nocolon", "aws:s3/bucket:Bucket:update", ":replace"])
def test_allow_parse_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="expected TYPE:OP"):
        Allow.parse(text)


def test_type_from_urn_and_bad_json() -> None:
    urn = "urn:pulumi:dev::image-platform::parent:Comp$aws:s3/bucket:Bucket::images"
    assert type_from_urn(urn) == BUCKET
    with pytest.raises(ValueError, match="not a Pulumi URN"):
        type_from_urn("bucket")
    with pytest.raises(ValueError, match="no 'steps' list"):
        preview_from_json({"changeSummary": {}})
    with pytest.raises(ValueError, match="lacks 'op'"):
        preview_from_json({"steps": [{"urn": urn}]})
