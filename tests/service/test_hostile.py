"""Bad input never gets a 5xx: a malformed-image corpus, absurd options, traversal, limits.

Every rejected request must leave storage exactly as it was.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import pytest
import pyvips
from image_service.config import Limits
from image_service.transform import Rendered
from service_testkit import ACME_KEY, BETA_KEY, App, AppFactory, Images


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(width: int, height: int, raw: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


def animated_gif(frames: int) -> bytes:
    frame = pyvips.Image.black(16, 16).cast("uchar")
    frames_list = [(frame + i * 20).cast("uchar") for i in range(frames)]
    strip = pyvips.Image.arrayjoin(frames_list, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 16)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * frames)
    return bytes(strip.gifsave_buffer())


def corpus(images: Images) -> dict[str, tuple[bytes, int, set[str]]]:
    j, p = images.jpeg, images.png
    bomb = png(8000, 8000, b"\x00" * (8001 * 8000))  # 64 MP of zeros in about 60 kB
    return {
        "zero bytes": (b"", 400, {"empty_body"}),
        "text": (b"just some text, honestly an image", 415, {"unsupported_format"}),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', 415, {"unsupported_format"}),
        "html": (b"<!doctype html><script>alert(1)</script>", 415, {"unsupported_format"}),
        "truncated jpeg": (j[: len(j) // 2], 422, {"invalid_image"}),
        "truncated jpeg with end marker": (j[: len(j) // 2] + b"\xff\xd9", 422, {"invalid_image"}),
        "truncated png": (p[: len(p) - 100], 422, {"invalid_image"}),
        "truncated webp": (images.webp[:-50], 422, {"invalid_image"}),
        "truncated gif": (images.gif[: len(images.gif) // 2], 422, {"invalid_image"}),
        "png with jpeg magic": (b"\xff\xd8\xff" + p[3:], 422, {"invalid_image"}),
        "jpeg magic then html": (b"\xff\xd8\xff<html>hi</html>\xff\xd9", 422, {"invalid_image"}),
        "jpeg + html polyglot": (j + b"<html><script>alert(1)</script>", 422, {"invalid_image"}),
        "png + zip polyglot": (p + b"PK\x03\x04" + b"\x00" * 26, 422, {"invalid_image"}),
        "gif/js polyglot": (b"GIF89a/*" + b"\x00" * 20 + b"*/=1;alert(1);", 422, {"invalid_image"}),
        "avif brand, no image": (
            b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1",
            422,
            {"invalid_image"},
        ),
        "png 100k x 100k header": (
            png(100_000, 100_000, b"\x00"),
            422,
            {"image_too_large", "invalid_image"},
        ),
        "jpeg 60k x 60k header": (jpeg_with_size(j, 60_000, 60_000), 422, {"image_too_large"}),
        "png decompression bomb": (bomb, 422, {"image_too_large"}),
        "corrupt png crc": (p[:40] + bytes([p[40] ^ 0xFF]) + p[41:], 422, {"invalid_image"}),
    }


def test_malformed_corpus(app: App, images: Images) -> None:
    for name, (data, status, errors) in corpus(images).items():
        reply = app.upload(data)
        assert reply.status_code == status, (name, reply.status_code, reply.text)
        body = reply.json()
        assert body["error"] in errors, (name, body)
        assert body["detail"], name
        assert app.stored_files() == [], name


def test_too_many_frames(make_app: AppFactory) -> None:
    app = make_app(limits=replace(Limits(), max_frames=3))
    reply = app.upload(animated_gif(5))
    assert reply.status_code == 422
    assert reply.json()["error"] == "too_many_frames"
    assert app.upload(animated_gif(3)).status_code == 201


def test_pixel_limit_counts_frames(make_app: AppFactory) -> None:
    app = make_app(limits=replace(Limits(), max_input_pixels=16 * 16 * 4))
    assert app.upload(animated_gif(5)).json()["error"] == "image_too_large"
    assert app.stored_files() == []


def test_upload_size_limits(make_app: AppFactory, images: Images) -> None:
    app = make_app(limits=replace(Limits(), max_upload_bytes=1000))
    declared = app.upload(images.jpeg)
    assert declared.status_code == 413
    assert declared.json()["error"] == "upload_too_large"

    def chunks() -> object:
        for _ in range(10):
            yield b"\xff" * 500

    streamed = app.client.post(
        "/v1/acme/images", content=chunks(), headers={"Authorization": f"Bearer {ACME_KEY}"}
    )
    assert streamed.status_code == 413
    assert app.stored_files() == []


def test_format_not_allowed_for_tenant(app: App, images: Images) -> None:
    reply = app.upload(images.webp, tenant="beta", key=BETA_KEY)
    assert reply.status_code == 415
    assert reply.json()["error"] == "format_not_allowed"


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("w=-1", 400, "invalid_option"),
        ("w=0", 400, "invalid_option"),
        ("w=abc", 400, "invalid_option"),
        ("w=1.5", 400, "invalid_option"),
        ("w=99999999", 422, "output_too_large"),
        ("w=9000", 422, "output_too_large"),
        ("w=3000&dpr=3", 422, "output_too_large"),
        ("q=1000", 400, "invalid_option"),
        ("q=0", 400, "invalid_option"),
        ("dpr=5", 400, "invalid_option"),
        ("dpr=0.5", 400, "invalid_option"),
        ("dpr=nan", 400, "invalid_option"),
        ("format=bmp", 400, "invalid_option"),
        ("format=svg", 400, "invalid_option"),
        ("fit=stretch", 400, "invalid_option"),
        ("gravity=up", 400, "invalid_option"),
        ("w=10&w=20", 400, "duplicate_option"),
        ("width=10", 400, "unknown_option"),
        ("url=http://127.0.0.1/", 400, "unknown_option"),
        ("w=10&&h=5", 400, "invalid_option"),
        ("w", 400, "invalid_option"),
    ],
)
def test_absurd_options(app: App, images: Images, query: str, status: int, error: str) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    before = app.stored_files()
    reply = app.client.get(f"/v1/beta/images/{iid}?{query}")
    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == error
    assert app.stored_files() == before


def test_huge_outside_fit_is_refused(app: App, images: Images) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.get(f"/v1/beta/images/{iid}?w=10&h=8000&fit=outside")
    assert reply.status_code == 422
    assert reply.json()["error"] == "output_too_large"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/../images",
        "/v1/%2e%2e/images",
        "/v1/beta/images/..%2F..%2Fetc%2Fpasswd",
        "/v1/beta/images/%2e%2e",
        "/v1/beta/images/" + "A" * 64,
        "/v1/beta/images/" + "0" * 63,
        "/v1/BETA/images/" + "0" * 64,
        "/v1/beta%00/images/" + "0" * 64,
        "/v1/" + "a" * 64 + "/images/" + "0" * 64,
    ],
)
def test_traversal_and_bad_ids(app: App, images: Images, path: str) -> None:
    app.upload(images.png, tenant="beta", key=BETA_KEY)
    before = app.stored_files()
    reply = app.client.get(path)
    assert reply.status_code in (400, 404, 405), reply.text
    assert "error" in reply.json()
    delete = app.client.delete(path, headers={"Authorization": f"Bearer {BETA_KEY}"})
    assert 400 <= delete.status_code < 500
    assert app.stored_files() == before


def test_unknown_image_is_404(app: App) -> None:
    reply = app.client.get("/v1/beta/images/" + "0" * 64)
    assert reply.status_code == 404
    assert reply.json()["error"] == "not_found"


def test_storage_quota(make_app: AppFactory, images: Images) -> None:
    app = make_app()
    beta = app.service.tenants["beta"]
    app.service.tenants["beta"] = replace(beta, max_stored_bytes=len(images.png) + 10)
    try:
        assert app.upload(images.png, tenant="beta", key=BETA_KEY).status_code == 201
        again = app.upload(images.png, tenant="beta", key=BETA_KEY)
        assert again.status_code == 201  # idempotent: stores nothing new
        over = app.upload(images.jpeg, tenant="beta", key=BETA_KEY)
        assert over.status_code == 413
        assert over.json()["error"] == "storage_quota_exceeded"
        assert len(app.stored_files()) == 1
    finally:
        app.service.tenants["beta"] = beta


def test_rate_limit_is_per_tenant(make_app: AppFactory, images: Images) -> None:
    app = make_app()
    beta = app.service.tenants["beta"]
    app.service.tenants["beta"] = replace(beta, requests_per_second=1)
    try:
        iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
        limited = app.client.get(f"/v1/beta/images/{iid}?w=10")
        assert limited.status_code == 429
        assert limited.json()["error"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        # Another tenant is not affected.
        assert app.upload(images.png).status_code == 201
    finally:
        app.service.tenants["beta"] = beta


def test_processing_time_limit(make_app: AppFactory) -> None:
    app = make_app(limits=replace(Limits(), max_processing_seconds=0.01))
    big = bytes(pyvips.Image.gaussnoise(3000, 3000).cast("uchar").pngsave_buffer(compression=1))
    iid = app.upload(big, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.get(f"/v1/beta/images/{iid}?w=2900&format=png&q=100")
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "processing_timeout"
    assert [p for p in app.stored_files() if "renditions" in p.parts] == []


def jpeg_with_app_segments(jpeg: bytes, total: int) -> bytes:
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + b"A" * 60_000
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment * (total // len(payload) + 1) + jpeg[2:]


def png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    """An 8x8 PNG with one extra chunk right after IHDR (8 magic + 25 IHDR bytes)."""
    base = png(8, 8, b"\x00" * 9 * 8)
    return base[:33] + png_chunk(kind, payload) + base[33:]


def webp_with_exif(webp: bytes, size: int) -> bytes:
    # A simple (VP8) WebP gets its EXIF chunk appended and the RIFF size fixed up.
    chunk = b"EXIF" + size.to_bytes(4, "little") + b"\x00" * size
    body = webp[12:] + chunk
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body


def test_metadata_bombs_are_refused(make_app: AppFactory, images: Images) -> None:
    app = make_app(limits=replace(Limits(), max_metadata_bytes=1_000_000))
    zeros = zlib.compress(b"\x00" * 50_000_000, 9)  # 50 MB inflated, about 50 kB on the wire
    cases = {
        "png zTXt": png_with_chunk(b"zTXt", b"Comment\x00\x00" + zeros),
        "png iCCP": png_with_chunk(b"iCCP", b"icc\x00\x00" + zeros),
        "png iTXt": png_with_chunk(b"iTXt", b"XML\x00\x01\x00en\x00\x00" + zeros),
        "png tEXt": png_with_chunk(b"tEXt", b"Comment\x00" + b"a" * 1_100_000),
        "jpeg APP1 flood": jpeg_with_app_segments(images.jpeg, 2_000_000),
        "webp EXIF": webp_with_exif(images.webp, 1_200_000),
    }
    for name, data in cases.items():
        reply = app.upload(data)
        assert reply.status_code == 422, (name, reply.status_code, reply.text)
        assert reply.json()["error"] == "metadata_too_large", name
    assert app.stored_files() == []
    # Modest metadata is fine (and stripped from every rendition).
    assert app.upload(png_with_chunk(b"tEXt", b"Comment\x00" + b"a" * 10_000)).status_code == 201
    assert app.upload(jpeg_with_app_segments(images.jpeg, 100_000)).status_code == 201


def test_oversize_headers_get_431(app: App) -> None:
    big = app.client.get("/healthz", headers={"X-Pad": "z" * 40_000})
    assert big.status_code == 431
    assert big.json()["error"] == "headers_too_large"
    many = app.client.get("/healthz", headers={f"X-Pad-{i}": "z" for i in range(150)})
    assert many.status_code == 431
    assert app.client.get("/healthz").status_code == 200


def gif_with_comment(gif: bytes, size: int) -> bytes:
    """A comment extension of `size` bytes (255-byte sub-blocks) right before the trailer."""
    blocks = b"".join(b"\xff" + b"c" * 255 for _ in range(size // 255)) + b"\x00"
    return gif[:-1] + b"\x21\xfe" + blocks + b"\x3b"


def test_gif_comment_bomb_is_refused(make_app: AppFactory, images: Images) -> None:
    from image_service.formats import metadata_size

    assert metadata_size("gif", images.gif, 10**9) < 100  # at most a NETSCAPE loop block
    assert metadata_size("gif", animated_gif(4), 10**9) < 100  # NETSCAPE loop block only
    base = metadata_size("gif", images.gif, 10**9)
    assert metadata_size("gif", gif_with_comment(images.gif, 5100), 10**9) == base + 5100
    app = make_app(limits=replace(Limits(), max_metadata_bytes=100_000))
    reply = app.upload(gif_with_comment(images.gif, 200_000))
    assert reply.status_code == 422
    assert reply.json()["error"] == "metadata_too_large"
    assert app.upload(gif_with_comment(images.gif, 5100)).status_code == 201


def test_avif_that_libvips_would_not_route_is_refused(app: App) -> None:
    still = pyvips.Image.black(32, 32, bands=3).new_from_image([40, 90, 200]).cast("uchar")
    avif = bytearray(still.copy(interpretation="srgb").heifsave_buffer(compression="av1"))
    at = avif.index(b"ftyp") + 4
    avif[at + 1] = 0x7F  # foreign major brand; 'avif' stays among the compatible brands
    reply = app.upload(bytes(avif))
    assert reply.status_code == 415
    assert reply.json()["error"] == "unsupported_format"
    assert app.stored_files() == []


def test_a_render_failure_is_a_4xx_not_a_5xx(make_app: AppFactory, images: Images) -> None:
    def broken(*args: object) -> Rendered:
        raise pyvips.Error("simulated libvips failure")

    app = make_app(render=broken)
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.get(f"/v1/beta/images/{iid}?w=10")
    assert reply.status_code == 422
    assert reply.json()["error"] == "unrenderable"
