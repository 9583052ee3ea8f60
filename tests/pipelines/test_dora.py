"""DORA figures derived from finished ledger deliveries, sound on small samples."""

from datetime import UTC, datetime, timedelta

import pytest
from delivery.dora import dora, human_duration
from delivery.ledger import DeliveryView, Finished, Outcome, Subject


def view(
    version: str, outcome: str, started: str, ended: str, *, commit_time: str, fixes: str = ""
) -> DeliveryView:
    """A finished delivery as the ledger folds it."""
    subject = Subject(version, commit_time=commit_time, fixes=fixes, started_at=started)
    finished = Finished(f"d-{version}", "t", ended, subject, ended, Outcome(outcome), "why")
    return DeliveryView(f"d-{version}", "t", subject, (), finished)


def d(version: str, outcome: str, start: str, end: str, fixes: str = "") -> DeliveryView:
    at = "2026-01-01T{}+00:00"
    return view(
        version,
        outcome,
        at.format(start),
        at.format(end),
        commit_time=at.format(start),
        fixes=fixes,
    )


def still_open(version: str) -> DeliveryView:
    return DeliveryView(f"d-{version}", "t", Subject(version), (), None)


def text(history: list[DeliveryView]) -> str:
    return "\n".join(dora(history).lines())


def test_empty_ledger_has_no_figures() -> None:
    figures = dora([])
    assert figures.deliveries == 0
    assert figures.deploys_per_day is None
    assert figures.change_fail_rate is None
    assert figures.lines() == ["no finished deliveries yet: nothing to measure"]


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
    # span 00:00 -> 03:10: far too short for a per-day rate; counts and the window instead
    assert figures.deploys_per_day is None
    assert figures.window_seconds == 190 * 60
    shown = text(history)
    assert "3 promotions in 3 h 10 min" in shown
    assert "per day" not in shown
    assert "2 of 4 deliveries failed" in shown
    assert "%" not in shown


def test_fix_of_an_unknown_version_is_not_a_failure() -> None:
    figures = dora([d("v9", "promoted", "00:00:00", "00:01:00", fixes="v-never-seen")])
    assert figures.failed_changes == 0
    assert figures.change_fail_rate == 0.0


def test_one_delivery_is_not_24_per_day() -> None:
    history = [d("v1", "promoted", "00:00:00", "01:00:00")]
    assert dora(history).deploys_per_day is None
    shown = text(history)
    assert "1 promotion in 1 h" in shown
    assert "per day" not in shown


def at(day: int, hour: int, minute: int = 0) -> str:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return (start + timedelta(days=day, hours=hour, minutes=minute)).isoformat()


def test_rates_appear_with_enough_history() -> None:
    # 10 deliveries over 9 days, 8 promoted, 2 aborted.
    history = [
        view(
            f"v{n}",
            "aborted" if n in (3, 7) else "promoted",
            at(n, 10),
            at(n, 10, 30),
            commit_time=at(n, 9),
        )
        for n in range(10)
    ]
    figures = dora(history)
    window = datetime.fromisoformat(at(9, 10, 30)) - datetime.fromisoformat(at(0, 10))
    window_days = window.total_seconds() / 86400
    assert figures.deploys_per_day == pytest.approx(8 / window_days, abs=1e-3)
    assert figures.rates_sufficient
    shown = text(history)
    assert "per day" in shown
    assert "change-fail rate: 20% (2 of 10)" in shown
    assert "lead time: median 1 h 30 min over 8 deliveries" in shown


def test_lead_time_in_human_units() -> None:
    history = [
        view(
            "v1",
            "promoted",
            "2026-01-01T12:00:00+00:00",
            "2026-01-01T13:12:40+00:00",
            commit_time="2026-01-01T10:00:00+00:00",
        )
    ]
    assert dora(history).lead_time_seconds == 3 * 3600 + 12 * 60 + 40
    assert "median 3 h 12 min over 1 delivery" in text(history)


@pytest.mark.parametrize(
    "commit_time",
    ["", "not a time", "2026-01-01T10:00:00", "2026-01-02T00:00:00+00:00"],
    ids=["absent", "garbage", "naive", "after-the-promotion"],
)
def test_a_delivery_without_a_usable_commit_time_is_left_out(commit_time: str) -> None:
    worktree = view(
        "abc1234-wt20260101T120000",
        "promoted",
        "2026-01-01T12:00:00+00:00",
        "2026-01-01T12:20:00+00:00",
        commit_time=commit_time,
    )
    history = [worktree, d("v2", "promoted", "13:00:00", "13:05:00")]
    figures = dora(history)
    assert figures.lead_time_samples == 1
    assert figures.lead_time_missing == 1
    assert figures.lead_time_seconds == 300.0  # v2's alone
    assert "1 without a commit time left out" in text(history)


def test_only_worktree_deliveries_have_no_lead_time() -> None:
    history = [
        view(
            "w",
            "promoted",
            "2026-01-01T12:00:00+00:00",
            "2026-01-01T12:01:00+00:00",
            commit_time="",
        )
    ]
    assert dora(history).lead_time_seconds is None
    assert "no promoted delivery with a commit time" in text(history)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0 s"),
        (45.9, "45 s"),
        (200, "3 min 20 s"),
        (180, "3 min"),
        (11520, "3 h 12 min"),
        (7200, "2 h"),
        (187200, "2 d 4 h"),
        (86400, "1 d"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected
