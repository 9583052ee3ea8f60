"""negotiate: format=auto picks what the client explicitly accepts."""

from __future__ import annotations

import pytest
from image_service.negotiate import accepted_types, choose_format

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAFARI_OLD = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CHROME, "webp"),
        ("image/avif,*/*", "avif"),
        (SAFARI_OLD, "jpeg"),  # */* and image/* do not promise WebP
        ("image/webp;q=0", "jpeg"),  # q=0 means "not acceptable"
        ("image/webp;q=0, image/avif;q=0.5", "avif"),
        (None, "jpeg"),
        ("", "jpeg"),
        ("IMAGE/WEBP", "webp"),
        ("image/webp;q=nonsense", "jpeg"),
    ],
)
def test_choice(accept: str | None, expected: str) -> None:
    assert choose_format(accept) == expected


def test_accepted_types_keeps_the_highest_q() -> None:
    types = accepted_types("image/webp;q=0.2, image/webp;q=0.9, text/html")
    assert types == {"image/webp": 0.9, "text/html": 1.0}
