"""DORA's four figures, derived from the ledger's finished deliveries only.

- deployment frequency: promotions per day over the span the ledger covers;
- lead time: commit time -> promoted (median);
- change-fail rate: aborted deliveries, plus promoted ones that a later delivery names as the
  version it fixes, over all deliveries that reached the canary;
- time to restore: for an abort, exposure from canary start to the abort; for a promoted version
  later fixed, from its promotion to the fix's promotion (median).
"""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from delivery.ledger import DeliveryView, Outcome


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


def _ts(value: str) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def dora(deliveries: Sequence[DeliveryView]) -> Dora:
    finished = [
        d.finished
        for d in deliveries
        if d.finished is not None and d.outcome in {Outcome.PROMOTED, Outcome.ABORTED}
    ]
    promoted = [f for f in finished if f.outcome is Outcome.PROMOTED]
    aborted = [f for f in finished if f.outcome is Outcome.ABORTED]

    fixed: dict[str, str] = {}  # version -> when the promoted delivery that fixed it ended
    for f in promoted:
        target = f.subject.fixes
        if target and target not in fixed:
            fixed[target] = f.ended_at
    bad_promotions = [f for f in promoted if f.subject.version in fixed]

    starts = [t for f in finished if (t := _ts(f.subject.started_at)) is not None]
    ends = [t for f in finished if (t := _ts(f.ended_at)) is not None]
    days = max((max(ends) - min(starts)) / 86400, 1 / 24) if starts and ends else 0.0

    leads = [
        end - commit
        for f in promoted
        if (end := _ts(f.ended_at)) is not None
        and (commit := _ts(f.subject.commit_time)) is not None
    ]
    restores: list[float] = []
    for f in aborted:
        start, end = _ts(f.subject.started_at), _ts(f.ended_at)
        if start is not None and end is not None:
            restores.append(end - start)
    for f in bad_promotions:
        broke, fix = _ts(f.ended_at), _ts(fixed[f.subject.version])
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
