"""DORA figures derived from finished ledger deliveries."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from delivery.dora import dora, human_duration


def d(version: str, outcome: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {
        "version": version,
        "outcome": outcome,
        "started_at": f"2026-01-01T{start}+00:00",
        "ended_at": f"2026-01-01T{end}+00:00",
        "commit_time": f"2026-01-01T{start}+00:00",
        **extra,
    }


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
        {"version": "v5", "outcome": "refused"},  # never reached the canary
        {"version": "v6", "outcome": None},  # still open
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
    text = "\n".join(figures.lines())
    assert "3 promotions in 3 h 10 min" in text
    assert "per day" not in text
    assert "2 of 4 deliveries failed" in text
    assert "%" not in text


def test_fix_of_an_unknown_version_is_not_a_failure() -> None:
    figures = dora([d("v9", "promoted", "00:00:00", "00:01:00", fixes="v-never-seen")])
    assert figures.failed_changes == 0
    assert figures.change_fail_rate == 0.0


def test_one_delivery_is_not_24_per_day() -> None:
    figures = dora([d("v1", "promoted", "00:00:00", "01:00:00")])
    assert figures.deploys_per_day is None
    text = "\n".join(figures.lines())
    assert "1 promotion in 1 h" in text
    assert "per day" not in text


def at(day: int, hour: int, minute: int = 0) -> str:
    return (
        datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=day, hours=hour, minutes=minute)
    ).isoformat()


def test_rates_appear_with_enough_history() -> None:
    # 10 deliveries over 9 days, 8 promoted, 2 aborted.
    history: list[dict[str, Any]] = []
    for n in range(10):
        outcome = "aborted" if n in (3, 7) else "promoted"
        history.append(
            {
                "version": f"v{n}",
                "outcome": outcome,
                "commit_time": at(n, 9),
                "started_at": at(n, 10),
                "ended_at": at(n, 10, 30),
            }
        )
    figures = dora(history)
    window_days = (
        datetime.fromisoformat(at(9, 10, 30)) - datetime.fromisoformat(at(0, 10))
    ).total_seconds() / 86400
    assert figures.deploys_per_day == pytest.approx(8 / window_days, abs=1e-3)
    assert figures.rates_sufficient
    text = "\n".join(figures.lines())
    assert "per day" in text
    assert "change-fail rate: 20% (2 of 10)" in text
    assert "lead time: median 1 h 30 min over 8 deliveries" in text


def test_lead_time_in_human_units() -> None:
    record = {
        "version": "v1",
        "outcome": "promoted",
        "commit_time": "2026-01-01T10:00:00+00:00",
        "started_at": "2026-01-01T12:00:00+00:00",
        "ended_at": "2026-01-01T13:12:40+00:00",
    }
    figures = dora([record])
    assert figures.lead_time_seconds == 3 * 3600 + 12 * 60 + 40
    assert "median 3 h 12 min over 1 delivery" in "\n".join(figures.lines())


@pytest.mark.parametrize(
    "commit_time",
    [None, "", "not a time", "2026-01-01T10:00:00", "2026-01-02T00:00:00+00:00"],
    ids=["absent", "empty", "garbage", "naive", "after-the-promotion"],
)
def test_a_delivery_without_a_usable_commit_time_is_left_out(commit_time: str | None) -> None:
    worktree = {
        "version": "abc1234-wt20260101T120000",
        "outcome": "promoted",
        "started_at": "2026-01-01T12:00:00+00:00",
        "ended_at": "2026-01-01T12:20:00+00:00",
    }
    if commit_time is not None:
        worktree["commit_time"] = commit_time
    with_commit = d("v2", "promoted", "13:00:00", "13:05:00")
    figures = dora([worktree, with_commit])
    assert figures.lead_time_samples == 1
    assert figures.lead_time_missing == 1
    assert figures.lead_time_seconds == 300.0  # v2's alone
    assert "1 without a commit time left out" in "\n".join(figures.lines())


def test_only_worktree_deliveries_have_no_lead_time() -> None:
    figures = dora(
        [
            {
                "version": "w",
                "outcome": "promoted",
                "started_at": "2026-01-01T12:00:00+00:00",
                "ended_at": "2026-01-01T12:01:00+00:00",
            }
        ]
    )
    assert figures.lead_time_seconds is None
    assert "no promoted delivery with a commit time" in "\n".join(figures.lines())


@pytest.mark.parametrize(
    ("seconds", "text"),
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
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_empty_ledger_says_so() -> None:
    assert dora([]).lines() == ["no finished deliveries yet: nothing to measure"]
