"""Signed URLs: HMAC-SHA256 over the canonical path and options, with several secrets for rotation.

Signed message: `/v1/{tenant}/images/{id}?{canonical_query}` (the `?` is always present).
Signature: URL-safe base64 of the HMAC, without padding, passed as `sig=`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from image_service.options import RenditionOptions, canonical_query


def signed_message(tenant: str, image_id: str, options: RenditionOptions) -> bytes:
    return f"/v1/{tenant}/images/{image_id}?{canonical_query(options)}".encode()


def sign(secret: bytes, tenant: str, image_id: str, options: RenditionOptions) -> str:
    mac = hmac.new(secret, signed_message(tenant, image_id, options), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


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
