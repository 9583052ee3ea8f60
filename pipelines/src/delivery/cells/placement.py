"""Which tenant lives in which cell: validation, and moving a tenant without losing anything.

Pure functions over frozen data. The tenants file says where each tenant lives (its optional
`cell` field); observed peak rates come from Prometheus. `validate_placement` reports every
problem at once (unplaced tenant, unknown cell, too many tenants, too much traffic);
`check_placement` raises them as one `CellsError`. A move is a small gated change:
`gate_placement_change` allows at most `max_moves` tenants to change cell in one change, and
`plan_move` returns the ordered, resumable procedure of docs/cells.md; `plan_sync` is the
delta pass that makes the copy exact after the router switched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from delivery.cells.schema import CellCatalog, CellsError


class LoadBasis(StrEnum):
    OBSERVED = "observed"  # peak rate measured over the look-back window
    DECLARED = "declared"  # the tenant's own rate limit (requests_per_second)
    DEFAULT = "default"  # neither: the environment's default_tenant_rps


@dataclass(frozen=True)
class TenantLoad:
    tenant: str
    cell: str | None
    declared_rps: float | None = None
    observed_rps: float | None = None

    def load(self, default_rps: float) -> tuple[float, LoadBasis]:
        """Observed peak when known (what the cell really carries), else the declared limit
        (what the tenant may send), else the environment's default."""
        if self.observed_rps is not None:
            return self.observed_rps, LoadBasis.OBSERVED
        if self.declared_rps is not None:
            return self.declared_rps, LoadBasis.DECLARED
        return default_rps, LoadBasis.DEFAULT


class TenantLike(Protocol):
    """What the placement needs from a tenants-file entry (image_contracts.tenants.TenantEntry)."""

    @property
    def id(self) -> str: ...

    @property
    def cell(self) -> str | None: ...

    @property
    def requests_per_second(self) -> float | None: ...


def tenant_loads(
    entries: Iterable[TenantLike], observed_rps: Mapping[str, float] | None = None
) -> tuple[TenantLoad, ...]:
    entries = list(entries)  # read twice below: a generator must not come back empty
    observed = observed_rps or {}
    unknown = sorted(set(observed) - {e.id for e in entries})
    if unknown:
        raise CellsError(f"observed rates for tenant(s) not in the tenants file: {unknown}")
    return tuple(
        TenantLoad(e.id, e.cell, e.requests_per_second, observed.get(e.id)) for e in entries
    )


@dataclass(frozen=True)
class CellUsage:
    cell: str
    tenants: tuple[str, ...]
    rps: float
    max_tenants: int
    max_rps: float
    estimated: tuple[str, ...]  # tenants counted at a declared or default rate

    @property
    def tenant_share(self) -> float:
        return len(self.tenants) / self.max_tenants

    @property
    def rps_share(self) -> float:
        return self.rps / self.max_rps


@dataclass(frozen=True)
class PlacementReport:
    usage: tuple[CellUsage, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def cell_of(self) -> dict[str, str]:
        return {t: u.cell for u in self.usage for t in u.tenants}


def validate_placement(loads: Sequence[TenantLoad], catalog: CellCatalog) -> PlacementReport:
    problems: list[str] = []
    ids = [t.tenant for t in loads]
    twice = sorted({t for t in ids if ids.count(t) > 1})
    if twice:
        problems.append(f"tenant(s) listed more than once: {twice}")
    known = set(catalog.names)
    unplaced = sorted(t.tenant for t in loads if t.cell is None)
    if unplaced:
        problems.append(f"tenant(s) in no cell (set `cell`): {unplaced}")
    for t in loads:
        if t.cell is not None and t.cell not in known:
            problems.append(f"tenant {t.tenant}: unknown cell {t.cell!r}; known: {sorted(known)}")
        for label, value in (("declared", t.declared_rps), ("observed", t.observed_rps)):
            if value is not None and not value >= 0:
                problems.append(f"tenant {t.tenant}: {label} rate must be >= 0, got {value}")
    usage: list[CellUsage] = []
    for cell in catalog.cells:
        members = [t for t in loads if t.cell == cell.name]
        rated = [(t.tenant, *t.load(catalog.default_tenant_rps)) for t in members]
        rps = sum(r for _, r, _ in rated)
        estimated = tuple(name for name, _, basis in rated if basis is not LoadBasis.OBSERVED)
        u = CellUsage(
            cell.name,
            tuple(t.tenant for t in members),
            rps,
            cell.max_tenants,
            cell.max_rps,
            estimated,
        )
        usage.append(u)
        if len(members) > cell.max_tenants:
            problems.append(
                f"cell {cell.name}: {len(members)} tenants, capacity {cell.max_tenants}"
            )
        if rps > cell.max_rps:
            problems.append(
                f"cell {cell.name}: {rps:g} req/s, capacity {cell.max_rps:g} req/s "
                f"({len(estimated)} tenant(s) at declared or default rates)"
            )
    return PlacementReport(tuple(usage), tuple(problems))


def check_placement(loads: Sequence[TenantLoad], catalog: CellCatalog) -> PlacementReport:
    report = validate_placement(loads, catalog)
    if not report.ok:
        raise CellsError(
            f"placement for {catalog.env} is invalid:\n  " + "\n  ".join(report.problems)
        )
    return report


# --- moving a tenant -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    tenant: str
    source: str
    target: str


def placement_changes(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[Move, ...]:
    """Tenants whose cell changed between two placements (tenant -> cell). New tenants are
    placements, not moves; removed tenants are a tenant change, not a cell change."""
    return tuple(Move(t, old[t], new[t]) for t in sorted(set(old) & set(new)) if old[t] != new[t])


def gate_placement_change(
    old: Mapping[str, str],
    new_loads: Sequence[TenantLoad],
    catalog: CellCatalog,
    *,
    max_moves: int = 1,
) -> tuple[Move, ...]:
    """Allow a change of placement only if the result is valid and it moves at most
    `max_moves` tenants: each move copies data and changes a route, so it is reviewed alone."""
    check_placement(new_loads, catalog)
    new = {t.tenant: t.cell for t in new_loads if t.cell is not None}
    moves = placement_changes(old, new)
    if len(moves) > max_moves:
        listed = ", ".join(f"{m.tenant} {m.source}->{m.target}" for m in moves)
        raise CellsError(
            f"{len(moves)} tenants change cell ({listed}); at most {max_moves} per change"
        )
    return moves


class MoveStepKind(StrEnum):
    CHECK = "check"  # the placement after the move is valid (capacity, known cell)
    COPY = "copy"  # server-side copy of the tenant's prefix, source cell -> target cell
    ROUTE = "route"  # deliver the placement change: the router sends the tenant to the target
    DRAIN = "drain"  # wait until the source cell serves no request of the tenant
    SYNC = "sync"  # plan_sync: copy what was written, delete what was deleted, during the copy
    VERIFY = "verify"  # every source key is in the target with the same ETag (or was deleted)
    RETAIN = "retain"  # keep the source prefix read-only for the retention period
    PURGE = "purge"  # a separate, later change: delete the source prefix


@dataclass(frozen=True)
class MoveStep:
    kind: MoveStepKind
    detail: str


@dataclass(frozen=True)
class MovePlan:
    move: Move
    source_prefix: str  # e.g. cells/cell-a/acme/
    target_prefix: str
    steps: tuple[MoveStep, ...]


def plan_move(
    loads: Sequence[TenantLoad],
    catalog: CellCatalog,
    tenant: str,
    target: str,
    *,
    retain_days: int = 7,
) -> MovePlan:
    """The procedure that moves one tenant to another cell; refuses a move that would leave
    the placement invalid, and a move to the cell the tenant is already in."""
    by_id = {t.tenant: t for t in loads}
    if tenant not in by_id:
        raise CellsError(f"move: no tenant {tenant!r} in the tenants file")
    current = by_id[tenant]
    if current.cell is None:
        raise CellsError(f"move: tenant {tenant} is in no cell yet; place it, do not move it")
    catalog.cell(target)
    if current.cell == target:
        raise CellsError(f"move: tenant {tenant} is already in cell {target}")
    if retain_days < 1:
        raise CellsError("move: retain the source prefix for at least one day")
    after = [
        TenantLoad(t.tenant, target, t.declared_rps, t.observed_rps) if t.tenant == tenant else t
        for t in loads
    ]
    report = validate_placement(after, catalog)
    if not report.ok:
        raise CellsError(
            f"move {tenant} {current.cell}->{target} leaves the placement invalid:\n  "
            + "\n  ".join(report.problems)
        )
    move = Move(tenant, current.cell, target)
    src = f"{catalog.prefix(current.cell)}{tenant}/"
    dst = f"{catalog.prefix(target)}{tenant}/"
    steps = (
        MoveStep(MoveStepKind.CHECK, f"placement valid with {tenant} in {target}"),
        MoveStep(MoveStepKind.COPY, f"copy {src} -> {dst}; record the source listing (manifest)"),
        MoveStep(MoveStepKind.ROUTE, f"deliver tenants file with {tenant}.cell = {target}"),
        MoveStep(MoveStepKind.DRAIN, f"no request for {tenant} served by {current.cell}"),
        MoveStep(MoveStepKind.SYNC, f"plan_sync(manifest, {src}, {dst}) and apply it"),
        MoveStep(MoveStepKind.VERIFY, f"every key of {src} is in {dst} with its ETag"),
        MoveStep(MoveStepKind.RETAIN, f"{src} read-only for {retain_days} days"),
        MoveStep(MoveStepKind.PURGE, f"delete {src} in a separate change after retention"),
    )
    return MovePlan(move, src, dst, steps)


@dataclass(frozen=True)
class SyncPlan:
    copy: tuple[str, ...]  # keys (relative to the tenant prefix) to copy source -> target
    delete: tuple[str, ...]  # keys to delete in the target: deleted in the source meanwhile


def plan_sync(
    manifest: Mapping[str, str], source_now: Mapping[str, str], target_now: Mapping[str, str]
) -> SyncPlan:
    """The delta pass after the route switched and the source drained. Listings map key ->
    ETag. `manifest` is the source listing the first copy worked from.

    - A source key missing in the target, or with another ETag, was written during the copy:
      copy it (renditions are immutable, so a different ETag means an original was replaced).
    - A key in the manifest but no longer in the source was deleted during the copy: delete it
      from the target, unless the target changed it since (written there after the switch).
    - Keys only in the target and not in the manifest were written after the switch: keep them.
    """
    copy = sorted(k for k, etag in source_now.items() if target_now.get(k) != etag)
    delete = sorted(
        k
        for k, etag in manifest.items()
        if k not in source_now and k in target_now and target_now[k] == etag
    )
    return SyncPlan(tuple(copy), tuple(delete))


def verify_copy(source_now: Mapping[str, str], target_now: Mapping[str, str]) -> tuple[str, ...]:
    """Keys of the drained source that the target lacks or holds with another ETag: the move
    may only retire the source when this is empty."""
    return tuple(sorted(k for k, etag in source_now.items() if target_now.get(k) != etag))
