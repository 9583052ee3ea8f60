"""libvips work: validate an upload, and render one rendition. Runs only in worker threads."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from image_service.config import Limits
from image_service.errors import DomainError
from image_service.formats import (
    ANIMATED_OUTPUTS,
    DETECTED_LOADERS,
    LOADERS,
    container_intact,
    metadata_size,
    sniff,
)
from image_service.geometry import VIPS_DIRECTIONS, covering_size, crop_offsets
from image_service.options import RenditionOptions

# Bump when rendering changes output bytes for the same options: it is part of every cache key.
RENDER_VERSION = "r2"
UNBOUNDED = 10_000_000
THUMB_CROPS = {"center": "centre", "attention": "attention", "entropy": "entropy"}
# A stored original: its bytes, or its file on local storage. libvips reads a file in small
# blocks, so a render never holds a whole copy of the original in memory (ADR 171).
Original = bytes | Path
HEAD_BYTES = 4096  # enough for sniff(): magic numbers and an AVIF ftyp box


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int  # as displayed, after EXIF orientation
    height: int  # one frame
    frames: int


@dataclass(frozen=True)
class Rendered:
    data: bytes
    width: int
    height: int


def vips_version() -> str:
    return f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"


def harden_libvips(concurrency: int) -> None:
    """Process-wide libvips settings, called once at start."""
    # Loaders for untrusted formats (and SVG, which can reach external files) are refused
    # outright, on top of the service only ever calling the loader it sniffed.
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoadSvg", True)
    # Renditions are stored, so libvips' operation cache would only hold memory.
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.concurrency_set(concurrency)


def _load(data: bytes, fmt: str, all_frames: bool, **extra: Any) -> pyvips.Image:
    loader = getattr(pyvips.Image, LOADERS[fmt])
    if all_frames and fmt in ("gif", "webp"):
        extra["n"] = -1
    return loader(data, **extra)


def original_head(original: Original) -> bytes:
    """The first bytes of an original, for sniff()."""
    if isinstance(original, bytes):
        return original[:HEAD_BYTES]
    with original.open("rb") as handle:
        return handle.read(HEAD_BYTES)


def _source(original: Original) -> pyvips.Source:
    """A fresh libvips source per load: each load reads from the start."""
    if isinstance(original, bytes):
        return pyvips.Source.new_from_memory(original)
    return pyvips.Source.new_from_file(str(original))


def _load_original(
    original: Original, fmt: str, all_frames: bool = False, **extra: Any
) -> pyvips.Image:
    """The sniffed format's own loader only (as for uploads), reading from a source."""
    loader = getattr(pyvips.Image, LOADERS[fmt].replace("_buffer", "_source"))
    if all_frames and fmt in ("gif", "webp"):
        extra["n"] = -1
    return loader(_source(original), **extra)


def detected_loader(data: bytes) -> str | None:
    """The loader class libvips' own sniffer picks for these bytes (None: no loader)."""
    pointer = pyvips.vips_lib.vips_foreign_find_load_buffer(data, len(data))
    if pointer == pyvips.ffi.NULL:
        return None
    return str(pyvips.ffi.string(pointer).decode())


def _frames(image: pyvips.Image) -> int:
    return int(image.get("n-pages")) if image.get_typeof("n-pages") else 1


def _display_size(image: pyvips.Image, frames: int) -> tuple[int, int]:
    width, height = image.width, image.height // max(1, frames)
    orientation = int(image.get("orientation")) if image.get_typeof("orientation") else 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def probe(data: bytes, allowed: frozenset[str], limits: Limits) -> ImageInfo:
    """Validate an upload for real: format, container, header limits, then a full decode."""
    if not data:
        raise DomainError("empty_body", "the request body is empty")
    fmt = sniff(data)
    if fmt is None:
        raise DomainError("unsupported_format", "not a JPEG, PNG, WebP, GIF or AVIF image")
    if fmt not in allowed:
        raise DomainError("format_not_allowed", f"{fmt} uploads are not allowed for this tenant")
    if not container_intact(fmt, data):
        raise DomainError("invalid_image", f"the {fmt} container is truncated or has trailing data")
    metadata = metadata_size(fmt, data, limits.max_metadata_bytes)
    if metadata > limits.max_metadata_bytes:
        raise DomainError(
            "metadata_too_large",
            f"the image carries more than {limits.max_metadata_bytes} bytes of metadata",
        )
    detected = detected_loader(data)
    if detected != DETECTED_LOADERS[fmt]:
        raise DomainError(
            "unsupported_format",
            f"the file starts like {fmt} but libvips does not read it as {fmt}",
        )
    try:
        header = _load(data, fmt, all_frames=True)
    except pyvips.Error as exc:
        raise DomainError("invalid_image", f"cannot read the {fmt} header") from exc
    frames = _frames(header)
    if frames > limits.max_frames:
        raise DomainError(
            "too_many_frames", f"{frames} frames exceed the limit of {limits.max_frames}"
        )
    width, height = _display_size(header, frames)
    pixels = width * height * frames
    if pixels > limits.max_input_pixels:
        raise DomainError(
            "image_too_large",
            f"{width}x{height}x{frames} frames = {pixels} pixels exceed the limit of "
            f"{limits.max_input_pixels}",
        )
    try:
        # Decode every pixel once; JPEG at 1/8 scale still entropy-decodes the whole stream.
        # libjpeg reports a truncated scan only as a warning, so JPEG is held to "warning";
        # other formats to "error" (libpng warns about harmless things such as old sRGB chunks).
        extra: dict[str, Any] = {"shrink": 8, "fail_on": "warning"} if fmt == "jpeg" else {}
        extra.setdefault("fail_on", "error")
        _load(data, fmt, all_frames=True, access="sequential", **extra).avg()
    except pyvips.Error as exc:
        raise DomainError("invalid_image", f"the {fmt} data does not decode") from exc
    return ImageInfo(fmt, width, height, frames)


def jpeg_shrink_factor(src_w: int, src_h: int, out_w: int, out_h: int) -> int:
    """Largest libjpeg DCT scale (8, 4, 2) that still leaves at least the output size."""
    for shrink in (8, 4, 2):
        if src_w // shrink >= out_w and src_h // shrink >= out_h:
            return shrink
    return 1


def _jpeg_downscale(
    data: Original, src_w: int, src_h: int, box_w: int | None, box_h: int | None
) -> pyvips.Image | None:
    """The common case, a plain sRGB JPEG made smaller: shrink-on-load, then one resize.

    About 30% cheaper than thumbnail_buffer for the same output (/work/shared/facts.md);
    anything else (upscaling, crops, colour management) goes through thumbnail_buffer.
    """
    scale = min(
        box_w / src_w if box_w is not None else float("inf"),
        box_h / src_h if box_h is not None else float("inf"),
    )
    if scale >= 1:
        return None
    out_w, out_h = max(1, int(src_w * scale + 0.5)), max(1, int(src_h * scale + 0.5))
    shrink = jpeg_shrink_factor(src_w, src_h, out_w, out_h)
    # Sequential access: libjpeg streams the scan through a few rows of buffers instead of
    # libvips holding a whole decoded frame (autorot of a rotated image needs random access).
    image = _load_original(data, "jpeg", shrink=shrink, access="sequential")
    if image.get_typeof("orientation") and int(image.get("orientation")) not in (0, 1):
        image = _load_original(data, "jpeg", shrink=shrink).autorot()
    if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
        return None
    return image.resize(out_w / image.width, vscale=out_h / image.height)


def _per_frame(
    image: pyvips.Image, animated: bool, op: Callable[[pyvips.Image], pyvips.Image]
) -> pyvips.Image:
    """Apply op to every frame of an animation (a vertical strip of pages), or to a still."""
    if not animated:
        return op(image)
    page = image.get_page_height()
    frames = [op(image.crop(0, i * page, image.width, page)) for i in range(image.height // page)]
    out = pyvips.Image.arrayjoin(frames, across=1).copy()
    out.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    return out


def needs_colour_management(header: pyvips.Image) -> bool:
    """CMYK always; RGB only with an embedded profile that is not sRGB.

    The ICC round trip costs more than the resize itself (about 25 ms of a 13 ms 2000 px JPEG
    thumbnail here), and untagged or sRGB-tagged pixels are already what browsers assume.
    """
    if header.interpretation == "cmyk":
        return True
    if not header.get_typeof("icc-profile-data"):
        return False
    profile = bytes(header.get("icc-profile-data"))
    # The description tag is ASCII (ICC v2) or UTF-16BE (v4 'mluc').
    return b"sRGB" not in profile and "sRGB".encode("utf-16-be") not in profile


def _save(image: pyvips.Image, fmt: str, quality: int, limits: Limits) -> bytes:
    # keep="none" strips EXIF (GPS!), XMP, IPTC and ICC; pixels are already sRGB.
    if fmt == "jpeg":
        out = image.jpegsave_buffer(Q=quality, keep="none")
    elif fmt == "png":
        out = image.pngsave_buffer(compression=6, keep="none")
    elif fmt == "webp":
        out = image.webpsave_buffer(Q=quality, keep="none")
    elif fmt == "avif":
        # The AV1 encoder runs after libvips' last eval signal, so it cannot be killed: its
        # time is bounded by the pixel cap checked before encoding and by effort (ADR 091).
        out = image.heifsave_buffer(
            Q=quality, compression="av1", effort=limits.avif_effort, keep="none"
        )
    else:
        out = image.gifsave_buffer(keep="none")
    return bytes(out)


def render(  # noqa: C901  the libvips pipeline in order: load, orient, resize, colour, encode
    data: Original,
    options: RenditionOptions,
    out_format: str,
    limits: Limits,
    background: tuple[int, int, int],
) -> Rendered:
    """Resize, colour-manage, strip and encode one rendition of a stored (validated) original.

    The deadline runs from here and covers the encoder: libvips' eval signal kills the pixel
    pipeline, and a result finished after the deadline is refused all the same.
    """
    deadline = time.monotonic() + limits.max_processing_seconds
    src_format = sniff(original_head(data)) or "jpeg"
    header = _load_original(data, src_format, all_frames=True)
    frames = _frames(header)
    animated = frames > 1 and out_format in ANIMATED_OUTPUTS
    src_w, src_h = _display_size(header, frames)
    box_w, box_h = options.target_size()
    fit = options.fit
    gravity = options.gravity

    colour = {"output_profile": "srgb"} if needs_colour_management(header) else {}
    # The header image keeps its decoder (and its buffers) alive: with a large JPEG, a few MB
    # per render held while the pixels are decoded a second time (ADR 097). Drop it first.
    del header

    def thumb(width: int, height: int, **extra: Any) -> pyvips.Image:
        # thumbnail shrinks on load, honours EXIF orientation and, when asked, converts
        # through the embedded ICC profile (or a fallback CMYK one) to sRGB.
        return pyvips.Image.thumbnail_source(
            _source(data),
            width,
            height=height,
            option_string="n=-1" if animated else "",
            **colour,
            **extra,
        )

    if box_w is None and box_h is None:
        image = thumb(UNBOUNDED, UNBOUNDED, size="down")
    elif box_w is None or box_h is None or fit == "inside":
        # Every other fit needs a box; with one side given they all mean "inside".
        fast = None
        if src_format == "jpeg" and not colour:
            fast = _jpeg_downscale(data, src_w, src_h, box_w, box_h)
        image = fast if fast is not None else thumb(box_w or UNBOUNDED, box_h or UNBOUNDED)
    elif fit == "fill":
        image = thumb(box_w, box_h, size="force")
    elif fit == "outside":
        image = thumb(*covering_size(src_w, src_h, box_w, box_h), size="force")
    elif fit == "cover":
        if gravity in THUMB_CROPS and not animated:
            image = thumb(box_w, box_h, crop=THUMB_CROPS[gravity])
        else:
            # thumbnail's own crop would cut the whole frame strip of an animation, so cover
            # first and crop each frame; smart gravities fall back to the centre there.
            image = thumb(*covering_size(src_w, src_h, box_w, box_h), size="force")
            page = image.get_page_height() if animated else image.height
            anchor = gravity if gravity in VIPS_DIRECTIONS else "center"
            left, top = crop_offsets(image.width, page, box_w, box_h, anchor)
            image = _per_frame(image, animated, lambda f: f.crop(left, top, box_w, box_h))
    else:  # contain
        image = thumb(box_w, box_h)
        page = image.get_page_height() if animated else image.height
        if (image.width, page) != (box_w, box_h):
            fill = [*background, 0] if image.hasalpha() else list(background)
            direction = VIPS_DIRECTIONS.get(gravity, "centre")
            image = _per_frame(
                image,
                animated,
                lambda f: f.gravity(direction, box_w, box_h, extend="background", background=fill),
            )

    page_height = image.get_page_height() if animated else image.height
    if max(image.width, page_height) > limits.max_output_dimension:
        raise DomainError(
            "output_too_large",
            f"the rendition would be {image.width}x{page_height} px; the limit is "
            f"{limits.max_output_dimension} px per side",
        )
    if out_format == "avif" and image.width * page_height > limits.max_avif_pixels:
        raise DomainError(
            "avif_too_large",
            f"an AVIF of {image.width}x{page_height} = {image.width * page_height} pixels "
            f"exceeds the AVIF limit of {limits.max_avif_pixels} pixels; ask for a smaller "
            "size or another format",
        )
    if out_format == "jpeg" and image.hasalpha():
        image = image.flatten(background=list(background))

    def on_eval(img: pyvips.Image, _progress: object) -> None:
        if time.monotonic() > deadline:
            img.set_kill(True)

    image.set_progress(True)
    image.signal_connect("eval", on_eval)
    timeout = DomainError(
        "processing_timeout", f"rendering took longer than {limits.max_processing_seconds} s"
    )
    try:
        out = _save(image, out_format, options.quality, limits)
    except pyvips.Error as exc:
        if time.monotonic() > deadline:
            raise timeout from exc
        raise
    if time.monotonic() > deadline:
        raise timeout
    return Rendered(out, image.width, page_height)
