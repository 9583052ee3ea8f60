"""The golden probes' input images: a small corpus covering each upload format and the cases
that break image services (EXIF orientation, CMYK, alpha, animation), generated, not stored.

Every image is "salted" so that each track and each run uploads different bytes (a different
content address): canary and baseline never share a stored original or rendition, and every
probe rendition is a cold render, even on a warm environment.
- JPEG, PNG, WebP and AVIF carry the salt in metadata (an EXIF description and an XMP packet),
  which the service strips: the pixels are identical across tracks, so even a smart crop
  (`attention`, `entropy`), which a few changed pixels can flip, must come out the same.
- GIF has no metadata libvips writes, so a 2x2 corner block is darkened instead; the probe plan
  asks no smart crop of a GIF.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pyvips

WIDTH, HEIGHT = 120, 80
FRAMES = 4

CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "avif": "image/avif",
}


@dataclass(frozen=True)
class CorpusImage:
    """One upload: `name` is stable across runs and tracks; `data` differs by salt."""

    name: str
    format: str  # the upload's own format, as the service reports it
    data: bytes
    note: str

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _pattern(width: int, height: int, shift: int = 0) -> pyvips.Image:
    """Three vertical bands (red, green, blue) under a vertical ramp: every side of the image
    looks different, so a crop from the wrong side or a mirrored image is a large pixel change."""
    x = pyvips.Image.xyz(width, height)
    column = (x[0] + shift) % width
    ramp = x[1] * (200 / max(1, height - 1))
    third = width / 3
    red = (column < third).ifthenelse(255, 0)
    green = ((column >= third) & (column < 2 * third)).ifthenelse(255, 0)
    blue = (column >= 2 * third).ifthenelse(255, 0)
    image = red.bandjoin([green, blue]) * 0.7 + ramp * 0.3
    return image.cast("uchar").copy(interpretation="srgb")


def _tagged(image: pyvips.Image, salt: str) -> pyvips.Image:
    """The same pixels, with the salt in metadata that every saver but GIF's writes."""
    out: pyvips.Image = image.copy()
    out.set_type(pyvips.GValue.gstr_type, "exif-ifd0-ImageDescription", f"probe {salt}")
    packet = f'<x:xmpmeta xmlns:x="adobe:ns:meta/">probe {salt}</x:xmpmeta>'
    out.set_type(pyvips.GValue.blob_type, "xmp-data", packet.encode())
    return out


def _darkened(image: pyvips.Image, salt: str) -> pyvips.Image:
    # Darken a 2x2 corner block by 8..39 levels per band: different bytes even after palette
    # quantisation, under one level of mean change in a probe's thumbnail.
    delta = [8 + v % 32 for v in hashlib.sha256(salt.encode()).digest()[: image.bands]]
    corner = image.crop(image.width - 2, image.height - 2, 2, 2)
    block = (corner - delta).cast("uchar").copy(interpretation=image.interpretation)
    out: pyvips.Image = image.insert(block, image.width - 2, image.height - 2)
    return out


def _alpha(image: pyvips.Image) -> pyvips.Image:
    """Add an alpha ramp: transparent on the left, opaque on the right."""
    x = pyvips.Image.xyz(image.width, image.height)[0]
    alpha = (x * (255 / max(1, image.width - 1))).cast("uchar")
    out: pyvips.Image = image.bandjoin(alpha)
    return out


def _animation(salt: str, *, darken: bool, frames: int = FRAMES) -> pyvips.Image:
    pages = [_pattern(WIDTH, HEIGHT, shift=i * 17) for i in range(frames)]
    if darken:
        pages = [_darkened(page, salt) for page in pages]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", HEIGHT)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * frames)
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    return strip


def _plain(salt: str) -> pyvips.Image:
    return _tagged(_pattern(WIDTH, HEIGHT), salt)


def _jpeg(salt: str) -> bytes:
    return bytes(_plain(salt).jpegsave_buffer(Q=90, keep="all"))


def _jpeg_exif6(salt: str) -> bytes:
    # Stored sideways (HEIGHT x WIDTH) with orientation 6: displayed upright as WIDTH x HEIGHT
    # only if the service applies the tag.
    stored = _tagged(_pattern(WIDTH, HEIGHT).rot270(), salt)
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    return bytes(stored.jpegsave_buffer(Q=90, keep="all"))


def _jpeg_cmyk(salt: str) -> bytes:
    # Without its (1 MB) profile: the service must still read it as CMYK, not as RGB.
    cmyk = _pattern(WIDTH, HEIGHT).icc_export(output_profile="cmyk").copy()
    cmyk.remove("icc-profile-data")
    return bytes(_tagged(cmyk, salt).jpegsave_buffer(Q=90, keep="all"))


def _png(salt: str) -> bytes:
    return bytes(_plain(salt).pngsave_buffer(keep="all"))


def _png_alpha(salt: str) -> bytes:
    return bytes(_tagged(_alpha(_pattern(WIDTH, HEIGHT)), salt).pngsave_buffer(keep="all"))


def _webp(salt: str) -> bytes:
    return bytes(_plain(salt).webpsave_buffer(Q=90, keep="all"))


def _webp_alpha(salt: str) -> bytes:
    image = _tagged(_alpha(_pattern(WIDTH, HEIGHT)), salt)
    return bytes(image.webpsave_buffer(Q=90, keep="all"))


def _webp_animated(salt: str) -> bytes:
    return bytes(_tagged(_animation(salt, darken=False), salt).webpsave_buffer(Q=90, keep="all"))


def _gif(salt: str) -> bytes:
    return bytes(_darkened(_pattern(WIDTH, HEIGHT), salt).gifsave_buffer())


def _gif_animated(salt: str) -> bytes:
    return bytes(_animation(salt, darken=True).gifsave_buffer())


def _avif(salt: str) -> bytes:
    return bytes(_plain(salt).heifsave_buffer(Q=70, compression="av1", keep="all"))


_BUILDERS: tuple[tuple[str, str, Callable[[str], bytes], str], ...] = (
    ("jpeg", "jpeg", _jpeg, "baseline sRGB JPEG"),
    ("jpeg-exif6", "jpeg", _jpeg_exif6, "stored sideways, EXIF orientation 6"),
    ("jpeg-cmyk", "jpeg", _jpeg_cmyk, "CMYK JPEG, no embedded profile"),
    ("png", "png", _png, "RGB PNG"),
    ("png-alpha", "png", _png_alpha, "RGBA PNG, alpha ramp"),
    ("webp", "webp", _webp, "lossy WebP"),
    ("webp-alpha", "webp", _webp_alpha, "WebP with alpha"),
    ("webp-animated", "webp", _webp_animated, f"animated WebP, {FRAMES} frames"),
    ("gif", "gif", _gif, "still GIF"),
    ("gif-animated", "gif", _gif_animated, f"animated GIF, {FRAMES} frames"),
    ("avif", "avif", _avif, "AVIF"),
)
NAMES: tuple[str, ...] = tuple(name for name, *_ in _BUILDERS)
DELETABLE = "deletable"


def build_corpus(salt: str) -> tuple[CorpusImage, ...]:
    """The corpus for one track in one run. Same salt, same bytes (same libvips)."""
    images = [CorpusImage(name, fmt, build(salt), note) for name, fmt, build, note in _BUILDERS]
    deletable = _png(f"{salt}/{DELETABLE}")
    return (*images, CorpusImage(DELETABLE, "png", deletable, "uploaded to be deleted"))


def track_corpora(run_id: str, attempts: int = 16) -> dict[str, tuple[CorpusImage, ...]]:
    """Canary's and baseline's corpora for one run, with no upload shared between them.

    A lossy encoder can absorb a salt (AVIF does, about one salt in ten), so the baseline's salt
    is varied until every image differs from the canary's: a shared content address would let one
    track read the other's stored renditions.
    """
    canary = build_corpus(f"{run_id}/canary")
    taken = {image.sha256 for image in canary}
    for attempt in range(attempts):
        baseline = build_corpus(f"{run_id}/baseline/{attempt}")
        if not taken & {image.sha256 for image in baseline}:
            return {"canary": canary, "baseline": baseline}
    raise RuntimeError(f"no distinct probe corpora for run {run_id} in {attempts} attempts")
