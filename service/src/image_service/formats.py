"""Image formats: magic-byte sniffing, container-integrity checks and output MIME types.

Pure functions over bytes. The service decides the format itself and then insists that libvips
agrees, so a file can never be routed to a loader (SVG, PDF, matrix...) that it did not ask for.
"""

from __future__ import annotations

import re
import struct
import zlib

# Output formats are part of the rendition URL contract.

INPUT_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "avif"})
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


# In entropy-coded data a marker is 0xFF then a byte that is not a stuffed 0x00, a restart
# marker (RST0-7) or another fill 0xFF.
_JPEG_SCAN_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_end(data: bytes, start: int = 0) -> int | None:
    """Walk a JPEG's segments and scans from SOI to the first real EOI; None if it never ends."""
    if data[start : start + 2] != b"\xff\xd8":
        return None
    pos, size = start + 2, len(data)
    while pos < size:
        if data[pos] != 0xFF:
            return None
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            return None
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return pos
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > size or int.from_bytes(data[pos : pos + 2], "big") < 2:
            return None
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker
            found = _JPEG_SCAN_MARKER.search(data, pos)
            if found is None:
                return None
            pos = found.start()
    return None


def _jpeg_has_mpf(data: bytes) -> bool:
    """An APP2 "MPF" segment: a multi-picture file (phones append images after the first)."""
    return b"\xff\xe2" in data[:65536] and b"MPF\x00" in data[:65536]


def _jpeg_intact(data: bytes) -> bool:
    end = _jpeg_end(data)
    # Multi-picture files carry further complete JPEG streams after the first; each is walked
    # to its own end, so nothing but image data may follow.
    while end is not None and end < len(data) and _jpeg_has_mpf(data):
        end = _jpeg_end(data, end)
    return end == len(data)


def _gif_end(data: bytes) -> int | None:
    """Walk a GIF's blocks (extensions, images and their sub-blocks) to the trailer."""
    if len(data) < 13:
        return None
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:
            return pos + 1
        if block == 0x21 and pos + 2 <= len(data):
            _, pos = _gif_sub_blocks(data, pos + 2)
        elif block == 0x2C and pos + 10 <= len(data):
            local = data[pos + 9]
            pos += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0) + 1
            _, pos = _gif_sub_blocks(data, pos)
        else:
            return None
    return None


def _riff_intact(data: bytes) -> bool:
    """The RIFF size matches the file and the chunks tile the payload exactly."""
    if len(data) < 12 or struct.unpack("<I", data[4:8])[0] + 8 != len(data):
        return False
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        pos += 8 + size + (size & 1)
    return pos == len(data)


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
    """True when the container, walked marker by marker, ends exactly where the file does.

    Trailing bytes after the image's own end are how polyglots (image + HTML/ZIP/JS) are
    built, and a final end marker proves nothing: the walk finds the real end. A truncated
    container fails this too, before any decoding.
    """
    if fmt == "jpeg":
        return _jpeg_intact(data)
    if fmt == "png":
        return _png_end(data) == len(data)
    if fmt == "gif":
        return _gif_end(data) == len(data)
    if fmt == "webp":
        return _riff_intact(data)
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
