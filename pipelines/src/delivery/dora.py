"""DORA's four figures, derived from the ledger's finished deliveries only.

- deployment frequency: promotions per day over the span the ledger covers;
- lead time: commit time -> promoted (median);
- change-fail rate: aborted deliveries, plus promoted ones that a later delivery names as the
  version it fixes, over all deliveries that reached the canary;
- time to restore: for an abort, exposure from canary start to the abort; for a promoted version
  later fixed, from its promotion to the fix's promotion (median).
"""

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Dora:
    deliveries: int
    promoted: int
    aborted: int
    failed_changes: int
    days: float
    deploys_per_day: float | None
    lead_time_seconds: float | None
    change_fail_rate: float | None
    time_to_restore_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _ts(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def dora(deliveries: Sequence[Mapping[str, Any]]) -> Dora:
    finished = [d for d in deliveries if d.get("outcome") in {"promoted", "aborted"}]
    promoted = [d for d in finished if d["outcome"] == "promoted"]
    aborted = [d for d in finished if d["outcome"] == "aborted"]

    fixed: dict[str, Mapping[str, Any]] = {}  # version -> the promoted delivery that fixed it
    for d in promoted:
        target = d.get("fixes")
        if isinstance(target, str) and target and target not in fixed:
            fixed[target] = d
    bad_promotions = [d for d in promoted if d.get("version") in fixed]

    starts = [t for d in finished if (t := _ts(d.get("started_at"))) is not None]
    ends = [t for d in finished if (t := _ts(d.get("ended_at"))) is not None]
    days = max((max(ends) - min(starts)) / 86400, 1 / 24) if starts and ends else 0.0

    leads = [
        end - commit
        for d in promoted
        if (end := _ts(d.get("ended_at"))) is not None
        and (commit := _ts(d.get("commit_time"))) is not None
    ]
    restores: list[float] = []
    for d in aborted:
        start, end = _ts(d.get("started_at")), _ts(d.get("ended_at"))
        if start is not None and end is not None:
            restores.append(end - start)
    for d in bad_promotions:
        broke, fix = _ts(d.get("ended_at")), _ts(fixed[str(d["version"])].get("ended_at"))
        if broke is not None and fix is not None:
            restores.append(fix - broke)

    failures = len(aborted) + len(bad_promotions)
    return Dora(
        deliveries=len(finished),
        promoted=len(promoted),
        aborted=len(aborted),
        failed_changes=failures,
        days=round(days, 4),
        deploys_per_day=round(len(promoted) / days, 3) if days else None,
        lead_time_seconds=round(statistics.median(leads), 1) if leads else None,
        change_fail_rate=round(failures / len(finished), 4) if finished else None,
        time_to_restore_seconds=round(statistics.median(restores), 1) if restores else None,
    )
