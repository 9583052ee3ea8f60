"""Image correctness: orientation, colour (CMYK too), metadata, alpha, animation, fits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import pyvips
from image_service.config import Limits
from image_service.options import RenditionOptions
from image_service.transform import probe, render

LIMITS = Limits()
WHITE = (255, 255, 255)
ALL = frozenset({"jpeg", "png", "webp", "gif", "avif"})


def solid(width: int, height: int, rgb: tuple[int, int, int]) -> pyvips.Image:
    return (pyvips.Image.black(width, height) + list(rgb)).cast("uchar").copy(interpretation="srgb")


def decode(data: bytes, **options: object) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "", **options)


def run(data: bytes, fmt: str = "png", **options: object) -> pyvips.Image:
    return decode(render(data, RenditionOptions(**options), fmt, LIMITS, WHITE).data)  # type: ignore[arg-type]


def close(pixel: list[float], rgb: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, rgb, strict=False))


def test_exif_orientation_is_applied() -> None:
    image = solid(100, 100, (255, 0, 0)).join(solid(100, 100, (0, 0, 255)), "horizontal").copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)  # stored sideways: rotate 90° cw
    data = bytes(image.jpegsave_buffer())
    info = probe(data, ALL, LIMITS)
    assert (info.width, info.height) == (100, 200)
    out = run(data, width=50)
    assert (out.width, out.height) == (50, 100)
    assert close(out(25, 10), (255, 0, 0))  # the left (red) half is now on top
    assert close(out(25, 90), (0, 0, 255))
    assert out.get_typeof("orientation") == 0


def test_embedded_profile_is_converted_to_srgb() -> None:
    display_p3 = solid(40, 40, (255, 0, 0)).icc_transform("p3", input_profile="srgb")
    raw = display_p3(5, 5)
    assert not close(raw, (255, 0, 0))  # the stored numbers are P3, not sRGB
    out = run(bytes(display_p3.jpegsave_buffer(Q=95)), width=20)
    assert close(out(5, 5), (255, 0, 0))
    assert out.get_typeof("icc-profile-data") == 0


@pytest.mark.parametrize("embed_profile", [True, False])
def test_cmyk_becomes_srgb(embed_profile: bool) -> None:
    cmyk = solid(40, 40, (255, 0, 0)).icc_export(output_profile="cmyk")
    if not embed_profile:
        cmyk = cmyk.copy()
        cmyk.remove("icc-profile-data")
    data = bytes(cmyk.jpegsave_buffer(Q=95))
    assert decode(data).interpretation == "cmyk"
    out = run(data, "jpeg", width=20)
    assert out.bands == 3
    assert out.interpretation == "srgb"
    r, g, b = out(5, 5)
    assert r > 200
    assert g < 70
    assert b < 80


def test_metadata_is_stripped() -> None:
    image = solid(64, 64, (10, 200, 30)).copy()
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "Secret Person")
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd3-GPSLatitudeRef", "N")
    image.set_type(pyvips.GValue.blob_type, "xmp-data", b"<x:xmpmeta>GPS secret</x:xmpmeta>")
    data = bytes(image.jpegsave_buffer(keep="all"))
    assert b"Secret Person" in data
    for fmt in ("jpeg", "png", "webp", "avif"):
        out = render(data, RenditionOptions(width=32), fmt, LIMITS, WHITE).data
        assert b"Secret Person" not in out, fmt
        assert b"GPS" not in out, fmt
        fields = decode(out).get_fields()
        assert "exif-data" not in fields, fmt
        assert "xmp-data" not in fields, fmt


def transparent_png() -> bytes:
    rgb = solid(40, 40, (200, 0, 0))
    alpha = (pyvips.Image.xyz(40, 40)[0] >= 20).ifthenelse(255, 0).cast("uchar")
    return bytes(rgb.bandjoin(alpha).pngsave_buffer())


def test_alpha_kept_where_the_format_has_it() -> None:
    data = transparent_png()
    for fmt in ("png", "webp", "avif"):
        out = decode(render(data, RenditionOptions(), fmt, LIMITS, WHITE).data)
        assert out.hasalpha(), fmt
        assert out(5, 5)[3] < 10, fmt
        assert out(35, 5)[3] > 245, fmt


def test_jpeg_flattens_onto_the_configured_background() -> None:
    out = decode(render(transparent_png(), RenditionOptions(), "jpeg", LIMITS, (0, 255, 0)).data)
    assert out.bands == 3
    assert close(out(5, 5), (0, 255, 0), 10)  # transparent half -> background
    assert close(out(35, 5), (200, 0, 0), 10)


def animation(frames: int) -> bytes:
    pages = [solid(40, 30, (i * 40, 0, 0)) for i in range(frames)]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 30)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [70] * frames)
    strip.set_type(pyvips.GValue.gint_type, "loop", 3)
    return bytes(strip.gifsave_buffer())


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animation_stays_animated(fmt: str) -> None:
    data = animation(5)
    assert probe(data, ALL, LIMITS).frames == 5
    rendered = render(data, RenditionOptions(width=20), fmt, LIMITS, WHITE)
    assert (rendered.width, rendered.height) == (20, 15)
    out = decode(rendered.data, n=-1)
    assert out.get("n-pages") == 5
    assert out.get_page_height() == 15
    assert out.get("delay") == [70] * 5
    assert out.get("loop") == 3


def test_animation_to_a_still_format_takes_the_first_frame() -> None:
    out = run(animation(5), "jpeg", width=20)
    assert (out.width, out.height) == (20, 15)
    assert out.get_typeof("n-pages") == 0 or out.get("n-pages") == 1


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({"width": 100}, (100, 50)),
        ({"height": 100}, (200, 100)),
        ({"width": 100, "height": 100}, (100, 50)),  # inside
        ({"width": 100, "height": 100, "fit": "cover"}, (100, 100)),
        ({"width": 100, "height": 100, "fit": "contain"}, (100, 100)),
        ({"width": 100, "height": 100, "fit": "fill"}, (100, 100)),
        ({"width": 100, "height": 100, "fit": "outside"}, (200, 100)),
        ({"width": 100, "dpr": Decimal("2.5")}, (250, 125)),
        ({"width": 50, "height": 50, "fit": "cover", "gravity": "attention"}, (50, 50)),
        ({"width": 50, "height": 50, "fit": "cover", "gravity": "entropy"}, (50, 50)),
        ({}, (400, 200)),
    ],
)
def test_fits(options: dict[str, Any], size: tuple[int, int]) -> None:
    data = bytes(solid(400, 200, (0, 90, 200)).pngsave_buffer())
    out = run(data, **options)
    assert (out.width, out.height) == size


@pytest.mark.parametrize(
    ("gravity", "expected"),
    [("west", (255, 0, 0)), ("east", (0, 0, 255)), ("center", (0, 255, 0))],
)
def test_cover_gravity_picks_the_side(gravity: str, expected: tuple[int, int, int]) -> None:
    strip = solid(100, 100, (255, 0, 0)).join(solid(100, 100, (0, 255, 0)), "horizontal")
    strip = strip.join(solid(100, 100, (0, 0, 255)), "horizontal")
    out = run(bytes(strip.pngsave_buffer()), width=50, height=50, fit="cover", gravity=gravity)
    assert close(out(25, 25), expected)


def test_contain_pads_with_the_background() -> None:
    data = bytes(solid(200, 100, (0, 0, 0)).pngsave_buffer())
    out = decode(
        render(data, RenditionOptions(100, 100, "contain", "north"), "png", LIMITS, WHITE).data
    )
    assert close(out(50, 10), (0, 0, 0))  # image anchored at the top
    assert close(out(50, 90), (255, 255, 255))  # padding below


@pytest.mark.parametrize(
    ("size", "shrink"),
    [((400, 267), 4), ((250, 166), 8), ((250, 167), 4), ((1000, 666), 2), ((1000, 667), 1)],
)
def test_jpeg_shrink_factor_never_undershoots(size: tuple[int, int], shrink: int) -> None:
    from image_service.transform import jpeg_shrink_factor

    assert jpeg_shrink_factor(2000, 1333, *size) == shrink


@pytest.mark.parametrize(("width", "height"), [(400, None), (None, 300), (100, 100), (1999, None)])
def test_jpeg_fast_path_matches_thumbnail(width: int | None, height: int | None) -> None:
    source = solid(2000, 1333, (30, 120, 220))
    data = bytes(source.jpegsave_buffer(Q=90))
    out = run(data, "png", width=width, height=height)
    reference = pyvips.Image.thumbnail_buffer(data, width or 10**7, height=height or 10**7)
    assert abs(out.width - reference.width) <= 1
    assert abs(out.height - reference.height) <= 1
    assert close(out(10, 10), (30, 120, 220), 4)


def test_srgb_tagged_images_skip_the_icc_round_trip() -> None:
    from image_service.transform import needs_colour_management

    tagged = solid(8, 8, (1, 2, 3)).icc_transform("srgb", input_profile="srgb", embedded=False)
    assert tagged.get_typeof("icc-profile-data")
    assert not needs_colour_management(tagged)
    assert not needs_colour_management(solid(8, 8, (1, 2, 3)))
    assert needs_colour_management(solid(8, 8, (1, 2, 3)).icc_transform("p3", input_profile="srgb"))
    assert needs_colour_management(solid(8, 8, (255, 0, 0)).icc_export(output_profile="cmyk"))


def sources() -> dict[str, bytes]:
    rgb = solid(60, 40, (200, 100, 50))
    rgb16 = (rgb.cast("ushort") * 256).cast("ushort").copy(interpretation="rgb16")
    return {
        "jpeg": bytes(rgb.jpegsave_buffer()),
        "png": bytes(rgb.pngsave_buffer()),
        "png-alpha": transparent_png(),
        "png-grey": bytes(solid(60, 40, (90, 90, 90))[0].pngsave_buffer()),
        "png-16bit": bytes(rgb16.pngsave_buffer()),
        "webp": bytes(rgb.webpsave_buffer()),
        "gif": bytes(rgb.gifsave_buffer()),
        "gif-animated": animation(3),
        "avif": bytes(rgb.heifsave_buffer(compression="av1")),
        "jpeg-cmyk": bytes(rgb.icc_export(output_profile="cmyk").jpegsave_buffer()),
    }


@pytest.mark.parametrize("out_format", ["jpeg", "png", "webp", "avif", "gif"])
def test_every_source_renders_to_every_format(out_format: str) -> None:
    for name, data in sources().items():
        assert probe(data, ALL, LIMITS).width in (40, 60), name
        rendered = render(data, RenditionOptions(width=30), out_format, LIMITS, WHITE)
        out = decode(rendered.data)
        assert out.get("vips-loader").startswith(
            {"jpeg": "jpeg", "png": "png", "webp": "webp", "avif": "heif", "gif": "gif"}[out_format]
        ), name
        assert out.width == 30, name
        assert out.interpretation in ("srgb", "b-w"), name


@pytest.mark.parametrize("fit", ["inside", "cover", "contain", "fill", "outside"])
@pytest.mark.parametrize("gravity", ["center", "north", "attention"])
def test_every_fit_keeps_every_frame(fit: str, gravity: str) -> None:
    rendered = render(animation(5), RenditionOptions(20, 20, fit, gravity), "webp", LIMITS, WHITE)
    out = decode(rendered.data, n=-1)
    assert out.get("n-pages") == 5
    assert out.get_page_height() == rendered.height
    assert out.get("delay") == [70] * 5
    expected = {"inside": (20, 15), "outside": (27, 20)}.get(fit, (20, 20))
    assert (rendered.width, rendered.height) == expected
