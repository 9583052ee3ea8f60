"""Pure geometry for fits and gravities: sizes and crop offsets, no pixels."""

from __future__ import annotations

import math

# Where each compass gravity anchors a crop or a padded image, as (x, y) fractions.
ANCHORS = {
    "center": (0.5, 0.5),
    "north": (0.5, 0.0),
    "northeast": (1.0, 0.0),
    "east": (1.0, 0.5),
    "southeast": (1.0, 1.0),
    "south": (0.5, 1.0),
    "southwest": (0.0, 1.0),
    "west": (0.0, 0.5),
    "northwest": (0.0, 0.0),
}
# libvips spells the compass for vips_gravity() like this.
VIPS_DIRECTIONS = {
    "center": "centre",
    "north": "north",
    "northeast": "north-east",
    "east": "east",
    "southeast": "south-east",
    "south": "south",
    "southwest": "south-west",
    "west": "west",
    "northwest": "north-west",
}


def covering_size(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Smallest aspect-preserving size that covers the box on both sides."""
    scale = max(box_w / src_w, box_h / src_h)
    return max(box_w, math.ceil(src_w * scale - 1e-9)), max(box_h, math.ceil(src_h * scale - 1e-9))


def crop_offsets(width: int, height: int, box_w: int, box_h: int, gravity: str) -> tuple[int, int]:
    """Top-left corner of a box_w x box_h crop anchored by gravity (compass points only)."""
    fx, fy = ANCHORS.get(gravity, ANCHORS["center"])
    left = round((width - box_w) * fx)
    top = round((height - box_h) * fy)
    return max(0, min(left, width - box_w)), max(0, min(top, height - box_h))
