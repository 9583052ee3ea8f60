"""Charts as inline SVG, drawn on the server: pure functions from numbers to markup.

No scripts and no inline styles (the page's Content-Security-Policy forbids both): colours come
from CSS classes in the console's stylesheet. Every chart carries a `<title>` and an
`aria-label`, and each line a `data-points` count, so people and tests can read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

Points = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Line:
    name: str
    points: Points
    css: str  # canary | baseline | weight | s0..s7
    step: bool = False  # draw as a staircase (weights)


@dataclass(frozen=True)
class Band:
    """A shaded area between two curves sharing x values: the tolerance above the baseline."""

    name: str
    lower: Points
    upper: Points


@dataclass(frozen=True)
class Marker:
    at: float
    label: str
    css: str  # step | fail


def format_value(value: float, unit: str) -> str:
    """A value as a person reads it, in the chart's unit (Grafana's unit names included)."""
    if not math.isfinite(value):
        return "-"
    if unit in ("ratio", "percentunit"):
        return f"{100 * value:.3g}%"
    if unit in ("seconds", "s"):
        return f"{1000 * value:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if unit in ("bytes", "Bps"):
        suffix = "/s" if unit == "Bps" else ""
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {name}{suffix}"
        return f"{value:.3g} B{suffix}"
    if unit == "reqps":
        return f"{value:.3g}/s"
    if unit == "percent":
        return f"{value:.3g}%"
    return f"{value:.3g}"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (> 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= factor * power * (1 + 1e-9):
            return factor * power
    return 10 * power


def clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def _staircase(points: Points, end: float) -> Points:
    out: list[tuple[float, float]] = []
    for index, (x, y) in enumerate(points):
        if out:
            out.append((x, out[-1][1]))
        out.append((x, y))
        if index == len(points) - 1 and end > x:
            out.append((end, y))
    return tuple(out)


def line_chart(  # noqa: PLR0913  keyword-only drawing options of one chart
    title: str,
    lines: Sequence[Line],
    *,
    unit: str,
    x_range: tuple[float, float],
    band: Band | None = None,
    markers: Sequence[Marker] = (),
    width: int = 640,
    height: int = 220,
    y_max: float | None = None,
) -> Markup:
    left, right, top, bottom = 64, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = x_range
    if x1 <= x0:
        x1 = x0 + 1.0
    drawn = [(ln, _staircase(ln.points, x1) if ln.step else ln.points) for ln in lines]
    ys = [y for _, pts in drawn for _, y in pts]
    if band is not None:
        ys += [y for _, y in band.upper]
    highest = max([*ys, 0.0])
    if y_max is not None:
        top_value = y_max
    elif highest > 0:
        top_value = nice_ceiling(highest * 1.05)
    else:  # all zero: a small axis, so "0%" does not look like a flat line under 100%
        top_value = 0.01 if unit in ("ratio", "percentunit") else 1.0

    def sx(x: float) -> float:
        return left + (min(max(x, x0), x1) - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - min(max(y, 0.0), top_value) / top_value * plot_h

    def path(points: Points) -> str:
        return " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect class="plot" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for i in range(5):
        value = top_value * i / 4
        y = sy(value)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(format_value(value, unit))}</text>"
        )
    for i in range(5):
        at = x0 + (x1 - x0) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text class="tick" x="{sx(at):.1f}" y="{height - 8}" text-anchor="{anchor}">'
            f"{clock(at)}</text>"
        )
    if band is not None and band.upper:
        polygon = path(band.upper) + " " + path(tuple(reversed(band.lower)))
        parts.append(
            f'<polygon class="band" points="{polygon}"><title>{escape(band.name)}</title></polygon>'
        )
    for marker in markers:
        x = sx(marker.at)
        # Labels near the right edge sit left of their line, so they are never clipped.
        anchor, dx = ("end", -4) if x > left + plot_w * 0.8 else ("start", 4)
        parts.append(
            f'<line class="marker {escape(marker.css)}" x1="{x:.1f}" x2="{x:.1f}" '
            f'y1="{top}" y2="{top + plot_h}"/>'
            f'<text class="marker-label {escape(marker.css)}" x="{x + dx:.1f}" y="{top + 12}" '
            f'text-anchor="{anchor}">{escape(marker.label)}</text>'
        )
    for ln, pts in drawn:
        name = escape(ln.name)
        if len(pts) == 1:
            (x, y) = pts[0]
            parts.append(
                f'<circle class="line {escape(ln.css)}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" '
                f'data-series="{name}" data-points="1"><title>{name}</title></circle>'
            )
        elif pts:
            parts.append(
                f'<polyline class="line {escape(ln.css)}" points="{path(pts)}" '
                f'data-series="{name}" data-points="{len(ln.points)}">'
                f"<title>{name}</title></polyline>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every dynamic text above is escaped
