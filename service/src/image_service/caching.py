"""HTTP caching: rendition cache keys, strong ETags and If-None-Match matching. Pure."""

from __future__ import annotations

import hashlib

from image_service.options import RenditionOptions, canonical_query

IMMUTABLE = "public, max-age=31536000, immutable"
TRIAL_MAX_AGE = 300  # seconds: a version under test is cached only this long anywhere


def cache_control(track: str) -> str:
    """Immutable only on stable; a canary or baseline reply expires within minutes.

    Should a version under test be aborted, no cache the project controls keeps its replies
    for long. Its renditions are also stored under its own code fingerprint (fingerprint.py).
    """
    return IMMUTABLE if track == "stable" else f"public, max-age={TRIAL_MAX_AGE}"


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
