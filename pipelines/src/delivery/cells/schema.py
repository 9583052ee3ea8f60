"""An environment's cells and its wave plans, read from `environments/cells.<env>.yaml`.

A cell is a complete copy of the service layer with a fixed maximum size: at most `max_tenants`
tenants and `max_rps` requests per second. Its `risk` tier orders it in a rollout: low-risk cells
go first, and wave 0 must be a single low-risk cell. A wave plan is an ordered list of waves, each
a set of cells and a bake after it. Waves may name cells, or ask for the next `count` cells, or
for enough cells that a `share` of all cells has the version after the wave (at least one), or
the `rest`, in risk order, so a 50-cell plan stays short and reviewable
after resolution (`resolve_plan` returns explicit cell lists).

Parsing is strict: unknown keys, wrong types and impossible values are `CellsError`s naming the
file and key. Everything here is pure: `parse_cells(data, where)` over the loaded YAML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from image_contracts.tenants import CELL_NAME


class CellsError(ValueError):
    """The cells file, a wave plan or a placement breaks the rules; the message says where."""


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return list(Risk).index(self)


@dataclass(frozen=True)
class Cell:
    name: str
    risk: Risk
    max_tenants: int
    max_rps: float


@dataclass(frozen=True)
class Wave:
    cells: tuple[str, ...]
    bake_seconds: float  # after the wave's cells promoted, before the next wave starts


@dataclass(frozen=True)
class WavePlan:
    name: str
    waves: tuple[Wave, ...]

    @property
    def cells(self) -> tuple[str, ...]:
        return tuple(c for w in self.waves for c in w.cells)

    def wave_of(self, cell: str) -> int:
        for i, wave in enumerate(self.waves):
            if cell in wave.cells:
                return i
        raise CellsError(f"plan {self.name}: cell {cell!r} is in no wave")


@dataclass(frozen=True)
class WaveSpec:
    """One wave as written: explicit cells, or a number of cells taken in risk order."""

    bake_seconds: float
    cells: tuple[str, ...] = ()
    count: int = 0
    share: float = 0.0  # cumulative: the share of all cells on the version after this wave
    rest: bool = False


@dataclass(frozen=True)
class CellCatalog:
    env: str
    cells: tuple[Cell, ...]
    default_tenant_rps: float  # the load of a tenant with no declared limit and no observation
    storage_prefix: str  # "cells/{cell}/": where a cell's originals and renditions live (ADR 131)
    plans: Mapping[str, WavePlan]
    default_plan: str
    source: str = ""
    # tenant -> cell, for an environment whose tenants file is generated (the local one): the
    # same placement a tenants file's `cell` fields give elsewhere (docs/cells.md).
    placement: Mapping[str, str] = field(default_factory=dict)
    # (weight, bake_seconds) of each cell's canary in a rollout; () for the delivery policy's
    # own `canary.steps` (ADR 163).
    canary_steps: tuple[tuple[int, float], ...] = ()

    def cell(self, name: str) -> Cell:
        for c in self.cells:
            if c.name == name:
                return c
        raise CellsError(f"{self.source or self.env}: unknown cell {name!r}; known: {self.names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cells)

    def plan(self, name: str | None = None) -> WavePlan:
        key = name or self.default_plan
        if key not in self.plans:
            raise CellsError(f"{self.source}: no wave plan {key!r}; known: {sorted(self.plans)}")
        return self.plans[key]

    def prefix(self, cell: str) -> str:
        self.cell(cell)
        return self.storage_prefix.format(cell=cell)


def risk_order(cells: Sequence[Cell]) -> tuple[Cell, ...]:
    """Lowest risk first, then by name: the order in which counted waves take cells."""
    return tuple(sorted(cells, key=lambda c: (Risk(c.risk).rank, c.name)))


def resolve_plan(name: str, specs: Sequence[WaveSpec], cells: Sequence[Cell]) -> WavePlan:
    """Explicit waves from specs. Every cell in exactly one wave; wave 0 is one low-risk cell."""
    where = f"plan {name}"
    if not specs:
        raise CellsError(f"{where}: needs at least one wave")
    known = {c.name: c for c in cells}
    named = [c for s in specs for c in s.cells]
    unknown = sorted(set(named) - set(known))
    if unknown:
        raise CellsError(f"{where}: unknown cell(s) {unknown}; known: {sorted(known)}")
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise CellsError(f"{where}: cell(s) {twice} appear in more than one wave")
    remaining = [c.name for c in risk_order(cells) if c.name not in set(named)]
    waves: list[Wave] = []
    for i, spec in enumerate(specs):
        if spec.rest:
            if i != len(specs) - 1:
                raise CellsError(f"{where}: wave {i}: `rest` must be the last wave")
            chosen = tuple(remaining)
        elif spec.cells:
            chosen = spec.cells
        else:
            placed = sum(len(w.cells) for w in waves)
            reach = math.ceil(spec.share * len(cells) - 1e-9)  # cumulative: after this wave
            wanted = spec.count or max(1, reach - placed)
            if wanted > len(remaining):
                raise CellsError(
                    f"{where}: wave {i} asks for {wanted} cell(s), only {len(remaining)} left"
                )
            chosen, remaining = tuple(remaining[:wanted]), remaining[wanted:]
        if not chosen:
            raise CellsError(f"{where}: wave {i} has no cells")
        waves.append(Wave(chosen, spec.bake_seconds))
    plan = WavePlan(name, tuple(waves))
    missing = sorted(set(known) - set(plan.cells))
    if missing:
        raise CellsError(f"{where}: cell(s) {missing} are in no wave (end with `rest: true`)")
    first = plan.waves[0].cells
    if len(first) != 1 or known[first[0]].risk is not Risk.LOW:
        raise CellsError(
            f"{where}: wave 0 must be exactly one low-risk cell, got {list(first)} "
            f"({', '.join(str(known[c].risk) for c in first)})"
        )
    return plan


# --- parsing -------------------------------------------------------------------------------------


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise CellsError(f"{where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise CellsError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _number(
    data: Mapping[str, Any], key: str, where: str, *, integer: bool = False, zero: bool = False
) -> float:
    if key not in data:
        raise CellsError(f"{where}: missing required key {key!r}")
    raw = data[key]
    if (
        isinstance(raw, bool)
        or not isinstance(raw, int | float)
        or (integer and not isinstance(raw, int))
    ):
        raise CellsError(f"{where}.{key}: expected {'an integer' if integer else 'a number'}")
    value = float(raw)
    low_ok = value >= 0 if zero else value > 0
    if not low_ok or not value < math.inf:
        raise CellsError(f"{where}.{key}: must be {'>=' if zero else '>'} 0, got {raw}")
    return float(value)


def _cell(raw: Any, where: str) -> Cell:
    data = _mapping(raw, where)
    _only(data, {"name", "risk", "max_tenants", "max_rps"}, where)
    name = data.get("name")
    if not isinstance(name, str) or not CELL_NAME.fullmatch(name):
        raise CellsError(
            f"{where}.name: {name!r} must be 1-32 of [a-z0-9-], starting and ending alphanumeric"
        )
    risk = data.get("risk")
    if risk not in {r.value for r in Risk}:
        raise CellsError(f"{where}.risk: expected one of {[r.value for r in Risk]}, got {risk!r}")
    return Cell(
        name=name,
        risk=Risk(risk),
        max_tenants=int(_number(data, "max_tenants", where, integer=True)),
        max_rps=_number(data, "max_rps", where),
    )


def _wave_spec(raw: Any, where: str) -> WaveSpec:
    data = _mapping(raw, where)
    _only(data, {"cells", "count", "share", "rest", "bake_seconds"}, where)
    chosen = [k for k in ("cells", "count", "share", "rest") if k in data]
    if len(chosen) != 1:
        raise CellsError(f"{where}: give exactly one of cells, count, share, rest (got {chosen})")
    bake = _number(data, "bake_seconds", where, zero=True)
    kind = chosen[0]
    if kind == "cells":
        cells = data["cells"]
        if not isinstance(cells, list) or not cells or not all(isinstance(c, str) for c in cells):
            raise CellsError(f"{where}.cells: expected a non-empty list of cell names")
        return WaveSpec(bake, cells=tuple(cells))
    if kind == "count":
        return WaveSpec(bake, count=int(_number(data, "count", where, integer=True)))
    if kind == "share":
        share = _number(data, "share", where)
        if share > 1:
            raise CellsError(f"{where}.share: a share of all cells, at most 1, got {share}")
        return WaveSpec(bake, share=share)
    if data["rest"] is not True:
        raise CellsError(f"{where}.rest: only `rest: true` is meaningful")
    return WaveSpec(bake, rest=True)


def _canary_steps(raw: Any, where: str) -> tuple[tuple[int, float], ...]:
    """Increasing weights in 1..50 (the baseline takes as much), each with a positive bake."""
    if not isinstance(raw, list):
        raise CellsError(f"{where}: expected a list of {{weight, bake_seconds}}")
    steps: list[tuple[int, float]] = []
    for i, item in enumerate(raw):
        step = _mapping(item, f"{where}[{i}]")
        _only(step, {"weight", "bake_seconds"}, f"{where}[{i}]")
        weight = int(_number(step, "weight", f"{where}[{i}]", integer=True))
        bake = _number(step, "bake_seconds", f"{where}[{i}]")
        if not 1 <= weight <= 50 or (steps and weight <= steps[-1][0]):
            raise CellsError(f"{where}[{i}].weight: increasing, within 1..50, got {weight}")
        steps.append((weight, bake))
    return tuple(steps)


def parse_cells(data: Any, where: str) -> CellCatalog:
    doc = _mapping(data, where)
    keys = {
        "schema_version",
        "environment",
        "default_tenant_rps",
        "storage",
        "cells",
        "waves",
        "placement",
        "canary_steps",
    }
    _only(doc, keys, where)
    version = doc.get("schema_version")
    if version != 1:
        raise CellsError(f"{where}.schema_version: this tool reads 1, got {version!r}")
    env = doc.get("environment")
    if not isinstance(env, str) or not env:
        raise CellsError(f"{where}.environment: expected the environment's name")
    raw_cells = doc.get("cells")
    if not isinstance(raw_cells, list) or not raw_cells:
        raise CellsError(f"{where}.cells: expected a non-empty list of cells")
    cells = tuple(_cell(c, f"{where}.cells[{i}]") for i, c in enumerate(raw_cells))
    names = [c.name for c in cells]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CellsError(f"{where}.cells: duplicate cell name(s) {twice}")
    storage = _mapping(doc.get("storage", {}), f"{where}.storage")
    _only(storage, {"prefix"}, f"{where}.storage")
    prefix = storage.get("prefix", "cells/{cell}/")
    if not isinstance(prefix, str) or "{cell}" not in prefix or not prefix.endswith("/"):
        raise CellsError(f"{where}.storage.prefix: must contain {{cell}} and end with '/'")
    if prefix.startswith("/") or ".." in prefix:
        raise CellsError(f"{where}.storage.prefix: must be relative, without '..'")
    waves = _mapping(doc.get("waves"), f"{where}.waves")
    _only(waves, {"default", "plans"}, f"{where}.waves")
    raw_plans = _mapping(waves.get("plans"), f"{where}.waves.plans")
    if not raw_plans:
        raise CellsError(f"{where}.waves.plans: needs at least one plan")
    plans: dict[str, WavePlan] = {}
    for pname, raw_specs in raw_plans.items():
        pwhere = f"{where}.waves.plans.{pname}"
        if not isinstance(raw_specs, list):
            raise CellsError(f"{pwhere}: expected a list of waves")
        specs = [_wave_spec(s, f"{pwhere}[{i}]") for i, s in enumerate(raw_specs)]
        try:
            plans[str(pname)] = resolve_plan(str(pname), specs, cells)
        except CellsError as exc:
            raise CellsError(f"{where}: {exc}") from None
    default = waves.get("default")
    if default not in plans:
        raise CellsError(f"{where}.waves.default: {default!r} is not one of {sorted(plans)}")
    placement = _mapping(doc.get("placement", {}), f"{where}.placement")
    for tenant, cell in placement.items():
        if not isinstance(tenant, str) or not isinstance(cell, str):
            raise CellsError(f"{where}.placement: expected tenant: cell names, got {tenant!r}")
    return CellCatalog(
        canary_steps=_canary_steps(doc.get("canary_steps", []), f"{where}.canary_steps"),
        placement={str(k): str(v) for k, v in placement.items()},
        env=env,
        cells=cells,
        default_tenant_rps=_number(doc, "default_tenant_rps", where),
        storage_prefix=prefix,
        plans=plans,
        default_plan=str(default),
        source=where,
    )


def load_cells(env: str, environments_dir: Path) -> CellCatalog:
    if not env or not env.replace("-", "").replace("_", "").isalnum():
        raise CellsError(f"env {env!r}: expected a plain environment name")
    path = environments_dir / f"cells.{env}.yaml"
    if not path.is_file():
        known = sorted(p.name[6:-5] for p in environments_dir.glob("cells.*.yaml"))
        raise CellsError(f"no cells file for env {env!r} ({path}); known: {known}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CellsError(f"{path}: not valid YAML: {exc}") from None
    catalog = parse_cells(data, str(path))
    if catalog.env != env:
        raise CellsError(f"{path}: environment is {catalog.env!r}, expected {env!r}")
    return catalog
