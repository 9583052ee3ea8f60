"""Rendition options: strict parsing of the query string and its canonical form.

The canonical form is what signatures cover and what rendition cache keys derive from, so two URLs
that mean the same rendition share one signature and one stored object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import unquote_plus

from image_contracts.renditions import (
    FITS,
    FORMAT_CHOICES,
    GRAVITIES,
    PARAM_ORDER,
    SIGNATURE_PARAM,
)

from image_service.errors import DomainError

# The URL vocabulary is a contract with every client that builds rendition URLs.
FORMATS = FORMAT_CHOICES
ORDER = PARAM_ORDER
_SIZE = re.compile(r"[1-9][0-9]*")
_SIZE_DIGITS = 9  # more digits than this is over any limit; int() is never asked
_QUALITY = re.compile(r"[1-9][0-9]{0,2}")
_DPR = re.compile(r"[1-4](?:\.[0-9]{1,2})?")


@dataclass(frozen=True)
class RenditionOptions:
    """What the client asked for. `format=None` means the original's own format."""

    width: int | None = None
    height: int | None = None
    fit: str = "inside"
    gravity: str = "center"
    format: str | None = None
    quality: int = 80
    dpr: Decimal = Decimal(1)

    def target_size(self) -> tuple[int | None, int | None]:
        """Requested pixel box after the device-pixel ratio."""

        def scale(v: int | None) -> int | None:
            return None if v is None else max(1, int((v * self.dpr).to_integral_value()))

        return scale(self.width), scale(self.height)


def _bad(detail: str) -> DomainError:
    return DomainError("invalid_option", detail)


def split_query(query: str) -> list[tuple[str, str]]:
    """Split a raw query string without the leniency of parse_qsl (no silent drops)."""
    if not query:
        return []
    pairs = []
    for part in query.split("&"):
        if not part:
            raise _bad("empty parameter in query string")
        name, eq, value = part.partition("=")
        if not eq:
            raise _bad(f"parameter {unquote_plus(name)!r} has no value")
        pairs.append((unquote_plus(name), unquote_plus(value)))
    return pairs


def parse_options(
    pairs: list[tuple[str, str]], max_dimension: int
) -> tuple[RenditionOptions, str | None]:
    """Parse query pairs into options and an optional signature; any doubt is a 400."""
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name in seen:
            raise DomainError("duplicate_option", f"parameter {name!r} given more than once")
        if name not in ORDER and name != SIGNATURE_PARAM:
            raise DomainError(
                "unknown_option", f"unknown parameter {name!r}; known: {', '.join(ORDER)}, sig"
            )
        seen[name] = value
    width = _size(seen, "w", max_dimension)
    height = _size(seen, "h", max_dimension)
    fit = _choice(seen, "fit", FITS, "inside")
    gravity = _choice(seen, "gravity", GRAVITIES, "center")
    fmt = seen.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise _bad(f"format={fmt!r} must be one of {', '.join(FORMATS)}")
    quality = 80
    if "q" in seen:
        if not _QUALITY.fullmatch(seen["q"]) or int(seen["q"]) > 100:
            raise _bad(f"q={seen['q']!r} must be an integer from 1 to 100")
        quality = int(seen["q"])
    dpr = Decimal(1)
    if "dpr" in seen:
        if not _DPR.fullmatch(seen["dpr"]) or Decimal(seen["dpr"]) > 4:
            raise _bad(f"dpr={seen['dpr']!r} must be a number from 1 to 4 (two decimals at most)")
        dpr = Decimal(seen["dpr"])
    options = RenditionOptions(width, height, fit, gravity, fmt, quality, dpr)
    for side, scaled in zip(("w", "h"), options.target_size(), strict=True):
        if scaled is not None and scaled > max_dimension:
            raise DomainError(
                "output_too_large",
                f"{side} x dpr = {scaled} px exceeds the output limit of {max_dimension} px",
            )
    return options, seen.get(SIGNATURE_PARAM)


def _size(seen: dict[str, str], name: str, max_dimension: int) -> int | None:
    raw = seen.get(name)
    if raw is None:
        return None
    if not _SIZE.fullmatch(raw):
        raise _bad(f"{name}={raw!r} must be a positive integer")
    # Any positive integer is a size; one too large gets the same answer however large it is.
    if len(raw) > _SIZE_DIGITS or int(raw) > max_dimension:
        raise DomainError(
            "output_too_large", f"{name}={raw} exceeds the output limit of {max_dimension} px"
        )
    return int(raw)


def _choice(seen: dict[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = seen.get(name, default)
    if raw not in allowed:
        raise _bad(f"{name}={raw!r} must be one of {', '.join(allowed)}")
    return raw


def _dpr_text(dpr: Decimal) -> str:
    return format(dpr.normalize(), "f")


def canonical_query(options: RenditionOptions) -> str:
    """Fixed key order, defaults omitted, numbers normalised: one spelling per rendition."""
    defaults = RenditionOptions()
    parts: list[str] = []
    if options.width is not None:
        parts.append(f"w={options.width}")
    if options.height is not None:
        parts.append(f"h={options.height}")
    if options.fit != defaults.fit:
        parts.append(f"fit={options.fit}")
    if options.gravity != defaults.gravity:
        parts.append(f"gravity={options.gravity}")
    if options.format is not None:
        parts.append(f"format={options.format}")
    if options.quality != defaults.quality:
        parts.append(f"q={options.quality}")
    if options.dpr != defaults.dpr:
        parts.append(f"dpr={_dpr_text(options.dpr)}")
    return "&".join(parts)
