"""Version skew, made explicit: each cell's stable version, what runs where, which cells lag.

Pure: the caller reads each cell's stable (and canary, if any) version from its stack or local
state, the release order from the ledger (versions in the order they were first promoted
anywhere), and the quarantined versions. `deliver status` prints `render_skew`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from delivery.cells.schema import CellsError


@dataclass(frozen=True)
class CellVersions:
    cell: str
    stable: str
    canary: str | None = None
    canary_weight: int = 0


@dataclass(frozen=True)
class SkewRow:
    cell: str
    stable: str
    canary: str | None
    canary_weight: int
    behind: int  # releases between this cell's stable and the newest stable anywhere
    quarantined: bool  # its stable version is quarantined: it gets the fix first

    @property
    def lags(self) -> bool:
        return self.behind > 0


@dataclass(frozen=True)
class SkewView:
    newest: str  # the newest stable version in any cell
    rows: tuple[SkewRow, ...]
    by_version: Mapping[str, tuple[str, ...]]  # stable version -> cells, newest first

    @property
    def lagging(self) -> tuple[str, ...]:
        return tuple(r.cell for r in self.rows if r.lags)

    @property
    def uniform(self) -> bool:
        return len(self.by_version) == 1


def version_skew(
    cells: Sequence[CellVersions],
    release_order: Sequence[str],
    quarantined_versions: Iterable[str] = (),
) -> SkewView:
    """`release_order`: versions oldest first. Every stable version must appear in it: a
    version the ledger does not know is an error, not a guess."""
    if not cells:
        raise CellsError("skew: no cells")
    names = [c.cell for c in cells]
    if len(set(names)) != len(names):
        raise CellsError(
            f"skew: cells listed twice: {sorted({n for n in names if names.count(n) > 1})}"
        )
    rank = {v: i for i, v in enumerate(release_order)}
    unknown = sorted({c.stable for c in cells if c.stable not in rank})
    if unknown:
        raise CellsError(f"skew: stable version(s) {unknown} are not in the release order")
    bad = set(quarantined_versions)
    newest = max((c.stable for c in cells), key=rank.__getitem__)
    rows = tuple(
        SkewRow(
            cell=c.cell,
            stable=c.stable,
            canary=c.canary,
            canary_weight=c.canary_weight if c.canary else 0,
            behind=rank[newest] - rank[c.stable],
            quarantined=c.stable in bad,
        )
        for c in cells
    )
    versions = sorted({c.stable for c in cells}, key=rank.__getitem__, reverse=True)
    by_version = {v: tuple(r.cell for r in rows if r.stable == v) for v in versions}
    return SkewView(newest, rows, by_version)


def render_skew(view: SkewView) -> str:
    lines = [f"{'cell':<16} {'stable':<26} {'canary':<18} {'behind':>6}  note"]
    for r in view.rows:
        canary = f"{r.canary} @{r.canary_weight}%" if r.canary else "-"
        note = ("quarantined; " if r.quarantined else "") + ("lags" if r.lags else "")
        lines.append(f"{r.cell:<16} {r.stable:<26} {canary:<18} {r.behind:>6}  {note.strip()}")
    for version, members in view.by_version.items():
        lines.append(f"{version}: {len(members)} cell(s): {', '.join(members)}")
    return "\n".join(lines)
