"""Typed per-cell ledger records: what a rollout across cells adds to one delivery record.

`RolloutRecord.from_rollout` snapshots a `Rollout`; `to_json`/`from_json` are the only places
that know the JSON shape (adding fields keeps `schema_version`; readers default what is missing).
The ledger's `Finished` record embeds one `RolloutRecord` (key `cells`), so one delivery has one
record with a record per cell; DORA per cell reads `CellRecord.outcome` and its times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from delivery.cells.rollout import CellPhase, Rollout, StopKind

SCHEMA_VERSION = 1


def _iso(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CellRecord:
    cell: str
    wave: int
    from_version: str
    outcome: CellPhase  # promoted | aborted | skipped | quarantined (pending/canary: in flight)
    steps_passed: int
    started_at: str
    finished_at: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "wave": self.wave,
            "from_version": self.from_version,
            "outcome": self.outcome.value,
            "steps_passed": self.steps_passed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CellRecord:
        return cls(
            cell=str(raw["cell"]),
            wave=int(raw.get("wave", 0)),
            from_version=str(raw.get("from_version") or ""),
            outcome=CellPhase(raw.get("outcome") or CellPhase.PENDING),
            steps_passed=int(raw.get("steps_passed", 0)),
            started_at=str(raw.get("started_at") or ""),
            finished_at=str(raw.get("finished_at") or ""),
            reason=str(raw.get("reason") or ""),
        )


@dataclass(frozen=True)
class ExperimentRecord:
    after_wave: int
    worse: bool
    summary: str
    at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "after_wave": self.after_wave,
            "worse": self.worse,
            "summary": self.summary,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ExperimentRecord:
        return cls(
            int(raw["after_wave"]),
            bool(raw["worse"]),
            str(raw.get("summary") or ""),
            str(raw.get("at") or ""),
        )


@dataclass(frozen=True)
class StopRecord:
    kind: StopKind
    wave: int
    cell: str
    reason: str
    at: str
    rule: str  # the ADR 132 rule as applied, in words: what `deliver status` shows

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "wave": self.wave,
            "cell": self.cell,
            "reason": self.reason,
            "at": self.at,
            "rule": self.rule,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StopRecord:
        return cls(
            StopKind(raw["kind"]),
            int(raw.get("wave", 0)),
            str(raw.get("cell") or ""),
            str(raw.get("reason") or ""),
            str(raw.get("at") or ""),
            str(raw.get("rule") or ""),
        )


@dataclass(frozen=True)
class RolloutRecord:
    version: str
    plan: str
    waves: tuple[tuple[str, ...], ...]
    status: str  # running | complete | stopped
    quarantined: bool
    cells: tuple[CellRecord, ...]
    experiments: tuple[ExperimentRecord, ...] = ()
    stop: StopRecord | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_rollout(cls, r: Rollout) -> RolloutRecord:
        stop = None
        if r.stop is not None:
            s = r.stop
            stop = StopRecord(s.kind, s.wave, s.cell or "", s.reason, _iso(s.at), s.rule)
        return cls(
            version=r.version,
            plan=r.plan.name,
            waves=tuple(w.cells for w in r.plan.waves),
            status=r.status,
            quarantined=r.quarantined,
            cells=tuple(
                CellRecord(
                    c.cell,
                    c.wave,
                    c.from_version,
                    c.phase,
                    c.step,
                    _iso(c.started_at),
                    _iso(c.finished_at),
                    c.reason,
                )
                for c in r.cells
            ),
            experiments=tuple(
                ExperimentRecord(e.after_wave, e.worse, e.summary, _iso(e.at))
                for e in r.experiments
            ),
            stop=stop,
        )

    def outcomes(self) -> dict[str, CellPhase]:
        return {c.cell: c.outcome for c in self.cells}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "version": self.version,
            "plan": self.plan,
            "waves": [list(w) for w in self.waves],
            "status": self.status,
            "quarantined": self.quarantined,
            "cells": [c.to_json() for c in self.cells],
            "experiments": [e.to_json() for e in self.experiments],
            "stop": None if self.stop is None else self.stop.to_json(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RolloutRecord:
        stop = raw.get("stop")
        return cls(
            version=str(raw["version"]),
            plan=str(raw.get("plan") or ""),
            waves=tuple(tuple(str(c) for c in w) for w in raw.get("waves") or ()),
            status=str(raw.get("status") or ""),
            quarantined=bool(raw.get("quarantined", False)),
            cells=tuple(CellRecord.from_json(c) for c in raw.get("cells") or ()),
            experiments=tuple(ExperimentRecord.from_json(e) for e in raw.get("experiments") or ()),
            stop=None if not stop else StopRecord.from_json(stop),
            schema_version=int(raw.get("schema_version", SCHEMA_VERSION)),
        )


@dataclass(frozen=True)
class CellDora:
    """Per cell, over a set of rollouts: how often it took a version, and how often a version
    it ran or tried failed (aborted in its canary, or quarantined after promotion)."""

    cell: str
    deployments: int  # rollouts that promoted a version in this cell
    failed: int  # of those, versions later quarantined; plus canaries aborted here
    aborted_here: int  # canaries that failed in this very cell (the stop's cell)

    @property
    def change_failure_rate(self) -> float:
        attempts = self.deployments + self.aborted_here
        return self.failed / attempts if attempts else 0.0


def dora_per_cell(records: Iterable[RolloutRecord]) -> tuple[CellDora, ...]:
    """Figures per cell, in first-seen order; the environment's figures are their sum."""
    counts: dict[str, list[int]] = {}
    for record in records:
        stop_cell = record.stop.cell if record.stop is not None else ""
        for c in record.cells:
            row = counts.setdefault(c.cell, [0, 0, 0])
            if c.outcome in (CellPhase.PROMOTED, CellPhase.QUARANTINED):
                row[0] += 1
            if c.outcome is CellPhase.QUARANTINED:
                row[1] += 1
            if c.outcome is CellPhase.ABORTED and c.cell == stop_cell:
                row[1] += 1
                row[2] += 1
    return tuple(CellDora(cell, d, f, a) for cell, (d, f, a) in counts.items())
