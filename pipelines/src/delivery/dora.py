"""DORA's four figures, derived from the ledger's finished deliveries only, and sound on small
samples: counts and the observed window always, rates only when there is enough data.

- deployment frequency: promotions over the window from the first delivery's start to the last
  one's end. A rate per day only when the window covers `MIN_WINDOW_DAYS` and holds
  `MIN_PROMOTIONS`; otherwise "3 promotions in 3 h 10 min". One delivery in an hour is not
  "24 per day".
- lead time: commit time -> promoted (median, with how many deliveries it rests on). A delivery
  without a usable commit time (a worktree snapshot, an image built outside git, a commit time
  after the promotion) is left out and counted, never guessed.
- change-fail rate: aborted deliveries, plus promoted ones that a later delivery names as the
  version it fixes, over all deliveries that reached the canary. The ratio is always in the JSON
  (`change_fail_rate`, with its counts); the text shows it as a rate only from
  `MIN_DELIVERIES_FOR_RATE` deliveries on, otherwise as "1 of 4".
- time to restore: for an abort, exposure from canary start to the abort; for a promoted version
  later fixed, from its promotion to the fix's promotion (median).

Durations are printed in human units ("3 h 12 min"); the JSON keeps seconds.
"""

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from delivery.ledger import DeliveryView, Outcome

MIN_WINDOW_DAYS = 7.0
MIN_PROMOTIONS = 5
MIN_DELIVERIES_FOR_RATE = 10


@dataclass(frozen=True)
class Dora:
    deliveries: int
    promoted: int
    aborted: int
    failed_changes: int
    days: float  # the observed window, in days (0 when no finished delivery has times)
    deploys_per_day: float | None  # None unless the window and the promotions are enough
    lead_time_seconds: float | None
    change_fail_rate: float | None
    time_to_restore_seconds: float | None
    window_seconds: float | None = None
    first_started_at: str | None = None
    last_ended_at: str | None = None
    lead_time_samples: int = 0
    lead_time_missing: int = 0  # promoted without a usable commit time
    restore_samples: int = 0
    rates_sufficient: bool = False  # change-fail rate rests on enough deliveries

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The figures for a person: counts, the window, and rates only where they mean one."""
        if not self.deliveries:
            return ["no finished deliveries yet: nothing to measure"]
        window = (
            "an unknown window"
            if self.window_seconds is None
            else human_duration(self.window_seconds)
        )
        out = [
            f"deliveries that reached the canary: {self.deliveries} "
            f"({self.promoted} promoted, {self.aborted} aborted) over {window}"
        ]
        if self.window_seconds is not None:
            out[0] += f", {self.first_started_at} .. {self.last_ended_at}"
        if self.deploys_per_day is not None:
            out.append(f"deployment frequency: {self.deploys_per_day:.2f} per day")
        else:
            out.append(
                f"deployment frequency: {plural(self.promoted, 'promotion')} in {window} "
                f"(a rate needs {MIN_WINDOW_DAYS:g} days and {MIN_PROMOTIONS} promotions)"
            )
        if self.lead_time_seconds is not None:
            line = (
                f"lead time: median {human_duration(self.lead_time_seconds)} over "
                f"{plural(self.lead_time_samples, 'delivery', 'deliveries')}"
            )
        else:
            line = "lead time: no promoted delivery with a commit time"
        if self.lead_time_missing:
            line += f" ({self.lead_time_missing} without a commit time left out)"
        out.append(line)
        share = f"{self.failed_changes} of {self.deliveries}"
        if self.rates_sufficient and self.change_fail_rate is not None:
            out.append(f"change-fail rate: {self.change_fail_rate:.0%} ({share})")
        else:
            out.append(
                f"change-fail rate: {share} deliveries failed "
                f"(a rate needs {MIN_DELIVERIES_FOR_RATE} deliveries)"
            )
        if self.time_to_restore_seconds is not None:
            out.append(
                f"time to restore: median {human_duration(self.time_to_restore_seconds)} over "
                f"{plural(self.restore_samples, 'failure')}"
            )
        else:
            out.append("time to restore: no failure to restore from")
        return out


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def human_duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '3 h 12 min', '2 d 4 h': two units at most, rounded down."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _ts(value: str) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # a naive time means nothing across machines: unusable
        return None
    return parsed.timestamp()


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

    starts = [(t, f) for f in finished if (t := _ts(f.subject.started_at)) is not None]
    ends = [(t, f) for f in finished if (t := _ts(f.ended_at)) is not None]
    window: float | None = None
    first: str | None = None
    last: str | None = None
    if starts and ends:
        t0, f0 = min(starts, key=lambda p: p[0])
        t1, f1 = max(ends, key=lambda p: p[0])
        window = max(0.0, t1 - t0)
        first, last = f0.subject.started_at, f1.ended_at
    days = (window or 0.0) / 86400
    enough_window = days >= MIN_WINDOW_DAYS and len(promoted) >= MIN_PROMOTIONS

    leads: list[float] = []
    for f in promoted:
        end, commit = _ts(f.ended_at), _ts(f.subject.commit_time)
        if end is not None and commit is not None and commit <= end:
            leads.append(end - commit)
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
        deploys_per_day=round(len(promoted) / days, 3) if enough_window else None,
        lead_time_seconds=round(statistics.median(leads), 1) if leads else None,
        change_fail_rate=round(failures / len(finished), 4) if finished else None,
        time_to_restore_seconds=round(statistics.median(restores), 1) if restores else None,
        window_seconds=None if window is None else round(window, 1),
        first_started_at=first,
        last_ended_at=last,
        lead_time_samples=len(leads),
        lead_time_missing=len(promoted) - len(leads),
        restore_samples=len(restores),
        rates_sufficient=len(finished) >= MIN_DELIVERIES_FOR_RATE,
    )
