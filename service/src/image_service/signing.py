"""Signed URLs: HMAC-SHA256 over the canonical path and options, with several secrets for rotation.

Signed message: `/v1/{tenant}/images/{id}?{canonical_query}` (the `?` is always present).
Signature: URL-safe base64 of the HMAC, without padding, passed as `sig=`.
"""

from __future__ import annotations

import hmac

from image_contracts.renditions import signature

from image_service.options import RenditionOptions, canonical_query


def sign(secret: bytes, tenant: str, image_id: str, options: RenditionOptions) -> str:
    # The rule itself is the contract's, shared with every client that signs URLs.
    return signature(secret, tenant, image_id, canonical_query(options))


def verify(
    secrets: tuple[bytes, ...],
    tenant: str,
    image_id: str,
    options: RenditionOptions,
    signature: str,
) -> bool:
    """True when any current secret produced `signature`; compares in constant time."""
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(
            sign(secret, tenant, image_id, options).encode(), signature.encode()
        )
    return ok


def signed_url(
    base: str, secret: bytes, tenant: str, image_id: str, options: RenditionOptions
) -> str:
    query = canonical_query(options)
    sig = sign(secret, tenant, image_id, options)
    joiner = "&" if query else ""
    return f"{base}/v1/{tenant}/images/{image_id}?{query}{joiner}sig={sig}"
