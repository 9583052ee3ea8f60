"""HTTP caching: rendition cache keys, strong ETags and If-None-Match matching. Pure."""

from __future__ import annotations

import hashlib

from image_service.options import RenditionOptions, canonical_query

IMMUTABLE = "public, max-age=31536000, immutable"


def rendition_digest(
    image_id: str,
    options: RenditionOptions,
    resolved_format: str,
    encoder_version: str,
    background: tuple[int, int, int],
) -> str:
    """Everything that decides the output bytes, hashed: the storage key and the ETag."""
    material = "|".join(
        (
            image_id,
            canonical_query(options),
            resolved_format,
            encoder_version,
            bytes(background).hex(),
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()


def etag_for(digest: str) -> str:
    return f'"{digest[:32]}"'


def none_match(header: str | None, etag: str) -> bool:
    """True when If-None-Match lists this ETag or `*` (weak comparison, RFC 9110 13.1.2)."""
    if not header:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False
