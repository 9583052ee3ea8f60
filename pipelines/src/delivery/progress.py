"""Live progress lines for `deliver run`: step, weight, time left in the bake, running verdict."""

import sys
from typing import TextIO


def progress_line(
    *,
    step: int,
    steps: int,
    weight: int,
    left: float,
    extension: int,
    running: str,
    canary_n: float,
    baseline_n: float,
) -> str:
    ext = f" (extension {extension})" if extension else ""
    return (
        f"[step {step + 1}/{steps}] weight {weight}%{ext} | bake {max(left, 0):4.0f}s left "
        f"| running verdict: {running} | requests canary {canary_n:.0f} baseline {baseline_n:.0f}"
    )


class Printer:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._open = False

    def live(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._open = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.write(text.rstrip("\n") + "\n")
        self.stream.flush()
