"""The rendition URL: its options, their canonical order, and how a signed URL is signed.

The service parses and verifies these; clients (the golden probes, the traffic generator, a
tenant's own code) build them. Signed message: `/v1/{tenant}/images/{id}?{canonical_query}`
(the `?` is always present); signature: URL-safe base64 of its HMAC-SHA256, without padding,
passed as `sig=`.
"""

import base64
import hashlib
import hmac

FITS = ("inside", "cover", "contain", "fill", "outside")
GRAVITIES = (
    "center",
    "north",
    "northeast",
    "east",
    "southeast",
    "south",
    "southwest",
    "west",
    "northwest",
    "attention",
    "entropy",
)
OUTPUT_FORMATS = ("jpeg", "png", "webp", "avif", "gif")
FORMAT_CHOICES = (*OUTPUT_FORMATS, "auto")  # auto: negotiated from the Accept header
# Canonical order of the options in a signed query.
PARAM_ORDER = ("w", "h", "fit", "gravity", "format", "q", "dpr")
SIGNATURE_PARAM = "sig"


def signed_message(tenant: str, image_id: str, canonical_query: str) -> bytes:
    return f"/v1/{tenant}/images/{image_id}?{canonical_query}".encode()


def signature(secret: bytes, tenant: str, image_id: str, canonical_query: str) -> str:
    mac = hmac.new(secret, signed_message(tenant, image_id, canonical_query), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
