"""Image formats: magic-byte sniffing, container-integrity checks and output MIME types.

Pure functions over bytes. The service decides the format itself and then insists that libvips
agrees, so a file can never be routed to a loader (SVG, PDF, matrix...) that it did not ask for.
"""

from __future__ import annotations

import struct
import zlib

INPUT_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "avif"})
OUTPUT_FORMATS = ("jpeg", "png", "webp", "avif", "gif")
ANIMATED_OUTPUTS = frozenset({"gif", "webp"})
ALPHA_OUTPUTS = frozenset({"png", "webp", "avif", "gif"})

LOADERS = {
    "jpeg": "jpegload_buffer",
    "png": "pngload_buffer",
    "webp": "webpload_buffer",
    "gif": "gifload_buffer",
    "avif": "heifload_buffer",
}
# What libvips' own sniffer (vips_foreign_find_load_buffer, used by thumbnail_buffer) must
# answer for each format; if it disagrees, the upload could be stored but never rendered.
DETECTED_LOADERS = {
    "jpeg": "VipsForeignLoadJpegBuffer",
    "png": "VipsForeignLoadPngBuffer",
    "webp": "VipsForeignLoadWebpBuffer",
    "gif": "VipsForeignLoadNsgifBuffer",
    "avif": "VipsForeignLoadHeifBuffer",
}
MIME_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "gif": "image/gif",
}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sniff(data: bytes) -> str | None:
    """The format named by the leading magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == PNG_MAGIC:
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        brands = data[8:12] + data[16 : min(len(data), 8 + struct.unpack(">I", data[:4])[0])]
        if any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4)):
            return "avif"
    return None


def _png_end(data: bytes) -> int | None:
    pos = len(PNG_MAGIC)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos
    return None


def _bmff_end(data: bytes) -> int | None:
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size == 1 and pos + 16 <= len(data):
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        elif size == 0:  # box runs to the end of the file
            return len(data)
        if size < 8:
            return None
        pos += size
    return pos


def container_intact(fmt: str, data: bytes) -> bool:
    """True when the container ends exactly where the file does.

    Trailing bytes after the image's own end marker are how polyglots (image + HTML/ZIP/JS)
    are built; a truncated container fails this too, before any decoding.
    """
    if fmt == "jpeg":
        return data.endswith(b"\xff\xd9")
    if fmt == "png":
        return _png_end(data) == len(data)
    if fmt == "gif":
        return data.endswith(b"\x3b")
    if fmt == "webp":
        return len(data) >= 12 and struct.unpack("<I", data[4:8])[0] + 8 == len(data)
    if fmt == "avif":
        return _bmff_end(data) == len(data)
    return False


def _inflated_size(blob: bytes, limit: int) -> int:
    """Bytes a zlib stream inflates to, counting no further than limit (memory stays bounded)."""
    try:
        return len(zlib.decompressobj().decompress(blob, max(1, limit)))
    except zlib.error:
        return len(blob)


def _jpeg_metadata(data: bytes) -> int:
    total, pos = 0, 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: metadata segments all come before it
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            total += length
        pos += 2 + length
    return total


def _png_metadata(data: bytes, cap: int) -> int:
    total, pos = 0, len(PNG_MAGIC)
    while pos + 12 <= len(data) and total <= cap:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind in (b"zTXt", b"iCCP"):
            keyword, _, rest = body.partition(b"\x00")
            total += len(keyword) + _inflated_size(rest[1:], cap - total + 1)
        elif kind == b"iTXt":
            keyword, _, rest = body.partition(b"\x00")
            compressed = rest[:1] == b"\x01"
            text = rest[2:].split(b"\x00", 2)[-1]  # after language tag and translated keyword
            size = _inflated_size(text, cap - total + 1) if compressed else len(text)
            total += len(keyword) + size
        elif kind in (b"tEXt", b"eXIf"):
            total += length
        pos += 12 + length
    return total


def _webp_metadata(data: bytes) -> int:
    total, pos = 0, 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if kind in (b"ICCP", b"EXIF", b"XMP "):
            total += size
        pos += 8 + size + (size & 1)
    return total


def _gif_sub_blocks(data: bytes, pos: int) -> tuple[int, int]:
    """Skip a chain of GIF data sub-blocks: (payload bytes, position after the terminator)."""
    total = 0
    while pos < len(data) and data[pos] != 0:
        total += data[pos]
        pos += 1 + data[pos]
    return total, pos + 1


def _gif_metadata(data: bytes, cap: int) -> int:
    """Comment, application and plain-text extension bytes (frame data is skipped)."""
    if len(data) < 13:
        return 0
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    total = 0
    while pos + 1 < len(data) and total <= cap:
        block = data[pos]
        if block == 0x21:  # extension: label, then data sub-blocks
            label = data[pos + 1]
            size, pos = _gif_sub_blocks(data, pos + 2)
            if label in (0x01, 0xFE, 0xFF):
                total += size
        elif block == 0x2C and pos + 10 <= len(data):  # image: descriptor, table, LZW data
            local = data[pos + 9]
            pos += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0) + 1
            _, pos = _gif_sub_blocks(data, pos)
        else:  # trailer (or garbage, which the decoder refuses)
            break
    return total


def metadata_size(fmt: str, data: bytes, cap: int) -> int:
    """Bytes of metadata a container carries, compressed PNG chunks counted inflated.

    Metadata is never served (it is stripped), but decoders still parse and inflate it, so a
    tiny image with a 128 MiB zTXt comment or 16 MiB of APP1 segments is refused up front.
    Counting stops soon after cap.
    """
    if fmt == "jpeg":
        return _jpeg_metadata(data)
    if fmt == "png":
        return _png_metadata(data, cap)
    if fmt == "webp":
        return _webp_metadata(data)
    if fmt == "gif":
        return _gif_metadata(data, cap)
    return 0
