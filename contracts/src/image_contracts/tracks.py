"""Deployment tracks: the traffic split's three backends, and the `track` label on every series."""

from enum import StrEnum


class Track(StrEnum):
    STABLE = "stable"
    BASELINE = "baseline"  # the stable version, freshly started beside the canary
    CANARY = "canary"


# In routing order: weights are always given stable, baseline, canary.
TRACKS: tuple[str, ...] = tuple(t.value for t in Track)


def parse_track(value: str) -> Track:
    try:
        return Track(value)
    except ValueError:
        raise ValueError(f"track {value!r} must be one of {', '.join(TRACKS)}") from None
