"""geometry: covering sizes and crop offsets, checked against what the numbers must mean."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from image_service.geometry import ANCHORS, covering_size, crop_offsets

sides = st.integers(1, 5000)


@given(sides, sides, sides, sides)
def test_cover_covers_the_box_and_keeps_the_aspect(sw: int, sh: int, bw: int, bh: int) -> None:
    w, h = covering_size(sw, sh, bw, bh)
    assert w >= bw
    assert h >= bh
    # One side fits the box exactly (or nearly: rounding) and the aspect ratio is kept.
    assert w == bw or h == bh or abs(w - bw) <= 1 or abs(h - bh) <= 1
    # Each side is rounded by under 1 px: w moves the aspect by under 1/h, h by about (w/h)/h.
    assert abs(w / h - sw / sh) <= (1 + sw / sh) / h + 1e-9 or min(w, h) < 2


@given(sides, sides, st.data())
def test_crop_box_stays_inside(width: int, height: int, data: st.DataObject) -> None:
    bw = data.draw(st.integers(1, width))
    bh = data.draw(st.integers(1, height))
    gravity = data.draw(st.sampled_from([*ANCHORS, "attention"]))
    left, top = crop_offsets(width, height, bw, bh, gravity)
    assert 0 <= left <= width - bw
    assert 0 <= top <= height - bh


@pytest.mark.parametrize(
    ("gravity", "expected"),
    [
        ("northwest", (0, 0)),
        ("north", (45, 0)),
        ("southeast", (90, 40)),
        ("center", (45, 20)),
        ("west", (0, 20)),
        ("unknown-falls-back-to-center", (45, 20)),
    ],
)
def test_compass_anchors(gravity: str, expected: tuple[int, int]) -> None:
    # A 100x50 image cropped to 10x10: the free space is 90 across and 40 down.
    assert crop_offsets(100, 50, 10, 10, gravity) == expected
