"""Port slots: reserved once, a new stable beside the old one, idle slots still scraped."""

import itertools

from delivery.ports import SLOTS, candidates, reserve, scrape_targets


def test_slots_are_reserved_once_and_kept() -> None:
    counter = itertools.count(9000)
    fresh = reserve({}, lambda: next(counter))
    assert fresh == dict(zip(SLOTS, range(9000, 9004), strict=True))
    assert reserve(fresh, lambda: next(counter)) == fresh
    # A partial record (an older format, a hand edit) is replaced as a whole.
    assert set(reserve({"canary": 1}, lambda: next(counter))) == set(SLOTS)


def test_a_new_stable_takes_the_stable_slot_not_in_use() -> None:
    slots = {"stable-a": 9000, "stable-b": 9001, "baseline": 9002, "canary": 9003}
    assert candidates("stable", slots, stable_in_use=9000) == [9001, 9000]
    assert candidates("stable", slots, stable_in_use=9001) == [9000, 9001]
    assert candidates("stable", slots, stable_in_use=None) == [9000, 9001]
    assert candidates("canary", slots, stable_in_use=9000) == [9003]


def test_slots_without_a_process_are_scraped_as_idle() -> None:
    slots = {"stable-a": 9000, "stable-b": 9001, "baseline": 9002, "canary": 9003}
    targets = scrape_targets({"stable": 9001, "canary": 9003}, slots)
    assert targets == {
        "stable": 9001,
        "canary": 9003,
        "idle-stable-a": 9000,
        "idle-baseline": 9002,
    }
