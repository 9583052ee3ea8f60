"""How a `deliver run` ended; the CLI maps each to its own exit code."""

from enum import StrEnum


class Outcome(StrEnum):
    PROMOTED = "promoted"
    ABORTED = "aborted"
    REFUSED = "refused"
    ERROR = "error"
