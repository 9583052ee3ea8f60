"""The delta gate: pure functions from a preview's per-resource operations to allow or refuse.

A preview is a change summary plus one operation per resource, taken either from Automation API
engine events or from a recorded `pulumi preview --json`. The gate refuses a change that is too big
for the environment's budget, one that replaces or deletes a protected type without an explicit
`--allow TYPE:OP` (whose reason is recorded), and one that mixes a platform change with a service
version change. Every reason is returned, not only the first.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ChangeKind(StrEnum):
    NONE = "none"
    SERVICE = "service"  # only the resources a version change is expected to touch
    PLATFORM = "platform"
    MIXED = "mixed"


# Pulumi operations that change nothing.
NO_CHANGE_OPS = frozenset({"same", "read", "refresh", "discard", "discard-replaced"})
# Pulumi spells a replacement as up to three steps; the gate sees one "replace".
_REPLACE_ALIASES = frozenset(
    {"replace", "create-replacement", "delete-replaced", "read-replacement", "import-replacement"}
)


def normalise_op(op: str) -> str:
    op = op.strip().lower()
    return "replace" if op in _REPLACE_ALIASES else op


@dataclass(frozen=True)
class ResourceOp:
    urn: str
    type: str
    op: str  # normalised: create | update | delete | replace | same | ...

    @property
    def changes(self) -> bool:
        return self.op not in NO_CHANGE_OPS


@dataclass(frozen=True)
class Preview:
    ops: tuple[ResourceOp, ...]
    change_summary: Mapping[str, int] = field(default_factory=dict)

    def changed(self) -> tuple[ResourceOp, ...]:
        # Replacements arrive as several steps on one URN: count each resource once.
        seen: dict[str, ResourceOp] = {}
        for op in self.ops:
            if op.changes and (op.urn not in seen or op.op == "replace"):
                seen[op.urn] = op
        return tuple(seen.values())


@dataclass(frozen=True)
class Allow:
    """An explicit override: `--allow TYPE:OP`. The type itself contains colons."""

    type: str
    op: str

    @classmethod
    def parse(cls, text: str) -> "Allow":
        type_, sep, op = text.strip().rpartition(":")
        op = normalise_op(op)
        if not sep or not type_ or op not in {"replace", "delete"}:
            raise ValueError(
                f"--allow {text!r}: expected TYPE:OP with OP replace or delete, "
                "e.g. aws:s3/bucket:Bucket:replace"
            )
        return cls(type=type_, op=op)

    def __str__(self) -> str:
        return f"{self.type}:{self.op}"


@dataclass(frozen=True)
class DeltaPolicy:
    max_changes: int
    max_risk: float
    op_weights: Mapping[str, float]
    type_weights: Mapping[str, float]
    protected_types: tuple[str, ...]
    # Types a service version change is expected to touch (deployments, routes, ...).
    service_types: tuple[str, ...]


@dataclass(frozen=True)
class Override:
    allow: str
    urn: str
    reason: str


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    kind: ChangeKind
    changes: int
    risk: float
    reasons: tuple[str, ...]  # why it was refused; empty when allowed
    overrides: tuple[Override, ...]
    summary: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "kind": str(self.kind),
            "changes": self.changes,
            "risk": round(self.risk, 3),
            "reasons": list(self.reasons),
            "overrides": [
                {"allow": o.allow, "urn": o.urn, "reason": o.reason} for o in self.overrides
            ],
            "summary": dict(self.summary),
        }


def classify(ops: Iterable[ResourceOp], service_types: Iterable[str]) -> ChangeKind:
    service = frozenset(service_types)
    kinds = {"service" if op.type in service else "platform" for op in ops if op.changes}
    if not kinds:
        return ChangeKind.NONE
    if kinds == {"service"}:
        return ChangeKind.SERVICE
    if kinds == {"platform"}:
        return ChangeKind.PLATFORM
    return ChangeKind.MIXED


def risk_score(ops: Iterable[ResourceOp], policy: DeltaPolicy) -> float:
    return sum(
        policy.op_weights.get(op.op, 1.0) * policy.type_weights.get(op.type, 1.0)
        for op in ops
        if op.changes
    )


def summarise(ops: Iterable[ResourceOp]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op.op] = counts.get(op.op, 0) + 1
    return dict(sorted(counts.items()))


def gate(
    preview: Preview,
    policy: DeltaPolicy,
    *,
    intended: ChangeKind,
    allows: Iterable[Allow] = (),
    reason: str = "",
) -> GateDecision:
    """Decide whether this preview may be applied as one delivery of the `intended` kind."""
    allows = tuple(allows)
    changed = preview.changed()
    reasons: list[str] = []
    overrides: list[Override] = []

    if allows and not reason.strip():
        reasons.append("--allow was given without --reason: an override must say why")

    protected = frozenset(policy.protected_types)
    for op in changed:
        if op.type not in protected or op.op not in {"replace", "delete"}:
            continue
        if Allow(op.type, op.op) in allows and reason.strip():
            overrides.append(Override(allow=f"{op.type}:{op.op}", urn=op.urn, reason=reason))
        else:
            reasons.append(
                f"{op.op} of protected {op.type} ({op.urn}) needs --allow {op.type}:{op.op} "
                "--reason TEXT"
            )

    kind = classify(changed, policy.service_types)
    if kind is ChangeKind.MIXED:
        platform = sorted({op.type for op in changed if op.type not in policy.service_types})
        reasons.append(
            "one delivery mixes a platform change with a service version change "
            f"(platform types: {', '.join(platform)}); deliver them separately"
        )
    elif kind is not ChangeKind.NONE and kind is not intended:
        reasons.append(f"this delivery is a {intended} change but the preview is a {kind} change")

    if len(changed) > policy.max_changes:
        reasons.append(
            f"{len(changed)} resources change; the budget for this environment is "
            f"{policy.max_changes}"
        )
    risk = risk_score(changed, policy)
    if risk > policy.max_risk:
        reasons.append(f"risk score {risk:.1f} exceeds the budget {policy.max_risk:.1f}")

    return GateDecision(
        allowed=not reasons,
        kind=kind,
        changes=len(changed),
        risk=risk,
        reasons=tuple(reasons),
        overrides=tuple(overrides),
        summary=dict(preview.change_summary) or summarise(changed),
    )


def type_from_urn(urn: str) -> str:
    """`urn:pulumi:stack::project::parent$type::name` -> `type`."""
    parts = urn.split("::")
    if len(parts) < 4:
        raise ValueError(f"not a Pulumi URN: {urn!r}")
    return parts[2].rsplit("$", 1)[-1]


def preview_from_json(document: Mapping[str, Any]) -> Preview:
    """Read the output of `pulumi preview --json` (recorded as fixtures for tests)."""
    steps = document.get("steps")
    if not isinstance(steps, list):
        raise ValueError("pulumi preview --json output has no 'steps' list")
    ops: list[ResourceOp] = []
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping) or "op" not in step or "urn" not in step:
            raise ValueError(f"preview step {i} lacks 'op' or 'urn'")
        state = step.get("newState") or step.get("oldState") or {}
        type_ = state.get("type") if isinstance(state, Mapping) else None
        ops.append(
            ResourceOp(
                urn=str(step["urn"]),
                type=str(type_ or type_from_urn(str(step["urn"]))),
                op=normalise_op(str(step["op"])),
            )
        )
    summary = document.get("changeSummary") or {}
    if not isinstance(summary, Mapping):
        raise ValueError("changeSummary must be a mapping")
    return Preview(ops=tuple(ops), change_summary={str(k): int(v) for k, v in summary.items()})
