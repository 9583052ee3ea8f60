"""DORA figures derived from finished ledger deliveries."""

from delivery.dora import dora
from delivery.ledger import DeliveryView, Finished, Outcome, Subject


def d(version: str, outcome: str, start: str, end: str, fixes: str = "") -> DeliveryView:
    """A finished delivery as the ledger folds it."""
    subject = Subject(
        version,
        commit_time=f"2026-01-01T{start}+00:00",
        fixes=fixes,
        started_at=f"2026-01-01T{start}+00:00",
    )
    ended = f"2026-01-01T{end}+00:00"
    finished = Finished(f"d-{version}", "t", ended, subject, ended, Outcome(outcome), "why")
    return DeliveryView(f"d-{version}", "t", subject, (), finished)


def still_open(version: str) -> DeliveryView:
    return DeliveryView(f"d-{version}", "t", Subject(version), (), None)


def test_empty_ledger_has_no_figures() -> None:
    figures = dora([])
    assert figures.deliveries == 0
    assert figures.deploys_per_day is None
    assert figures.change_fail_rate is None


def test_figures_from_a_small_history() -> None:
    history = [
        d("v1", "promoted", "00:00:00", "00:10:00"),
        d("v2", "aborted", "01:00:00", "01:02:00"),
        d("v3", "promoted", "02:00:00", "02:10:00"),
        d("v4", "promoted", "03:00:00", "03:10:00", fixes="v3"),
        d("v5", "refused", "02:30:00", "02:30:00"),  # never reached the canary
        d("v7", "applied", "02:40:00", "02:41:00"),  # a platform delivery: no canary either
        still_open("v6"),
    ]
    figures = dora(history)
    assert (figures.deliveries, figures.promoted, figures.aborted) == (4, 3, 1)
    assert figures.failed_changes == 2  # v2 aborted, v3 fixed by v4
    assert figures.change_fail_rate == 0.5
    assert figures.lead_time_seconds == 600.0
    # restores: v2 exposure 120 s; v3 promoted 02:10 -> fixed 03:10 = 3600 s; median 1860
    assert figures.time_to_restore_seconds == 1860.0
    # span 00:00 -> 03:10 = 3h10m; 3 promotions
    assert figures.deploys_per_day is not None
    assert abs(figures.deploys_per_day - 3 / (190 / 1440)) < 0.01


def test_fix_of_an_unknown_version_is_not_a_failure() -> None:
    figures = dora([d("v9", "promoted", "00:00:00", "00:01:00", fixes="v-never-seen")])
    assert figures.failed_changes == 0
    assert figures.change_fail_rate == 0.0
