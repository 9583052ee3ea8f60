"""`format=auto`: choose an output format from the Accept header (the reply adds Vary: Accept)."""

from __future__ import annotations


def accepted_types(accept: str | None) -> dict[str, float]:
    """Media types explicitly listed in Accept, with their q-values."""
    types: dict[str, float] = {}
    for item in (accept or "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        types[media.lower()] = max(q, types.get(media.lower(), 0.0))
    return types


def choose_format(accept: str | None) -> str:
    """WebP first (fast to encode, near-universal), then AVIF, else JPEG.

    Only explicit listings count: browsers send `*/*` even when they cannot decode WebP.
    """
    types = accepted_types(accept)
    if types.get("image/webp", 0.0) > 0:
        return "webp"
    if types.get("image/avif", 0.0) > 0:
        return "avif"
    return "jpeg"
