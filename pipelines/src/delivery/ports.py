"""Port slots: one loopback port reserved per slot when the environment first starts.

Prometheus scrapes the slots statically, so a new canary is scraped within one interval (file
discovery alone lags ~5 s). Stable has two slots so that a promotion starts the new stable beside
the old one before the old one stops.
"""

from collections.abc import Callable, Mapping

SLOTS = ("stable-a", "stable-b", "baseline", "canary")


def reserve(current: Mapping[str, int], free_port: Callable[[], int]) -> dict[str, int]:
    """The reserved slots: the recorded ones, or a fresh free port for each."""
    if current and set(current) == set(SLOTS):
        return dict(current)
    return {slot: free_port() for slot in SLOTS}


def candidates(track: str, slots: Mapping[str, int], stable_in_use: int | None) -> list[int]:
    """Ports to try for `track`, best first: a new stable takes the stable slot not in use."""
    if track != "stable":
        return [slots[track]]
    pair = [slots["stable-a"], slots["stable-b"]]
    return [p for p in pair if p != stable_in_use] + [p for p in pair if p == stable_in_use]


def scrape_targets(running: Mapping[str, int], slots: Mapping[str, int]) -> dict[str, int]:
    """Prometheus targets: each running track, plus every slot no track uses (scraped down)."""
    targets = dict(running)
    used = set(running.values())
    for slot, port in slots.items():
        if port not in used:
            targets[f"idle-{slot}"] = port
    return targets
