"""Reading a rendition URL: the pure plan (parse, sign-check, negotiate, key), the rate limit
and the one storage round trip. Shared by the Starlette handler (app.py) and the lean stored
read path (fastpath.py), so both make the same checks with the same code."""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

from image_service.caching import etag_for, rendition_digest
from image_service.errors import DomainError
from image_service.negotiate import choose_format
from image_service.options import RenditionOptions, parse_options, split_query
from image_service.service import Service
from image_service.signing import verify
from image_service.storage import Storage
from image_service.tenants import Tenant

IMAGE_ID = re.compile(r"[0-9a-f]{64}")  # an image id: the SHA-256 of the original


def rate_limit(svc: Service, tenant: Tenant) -> None:
    wait = svc.limiter.check(tenant.id, tenant.requests_per_second, time.monotonic())
    if wait is not None:
        raise DomainError(
            "rate_limited",
            f"tenant {tenant.id} is limited to {tenant.requests_per_second:g} requests/s",
            wait,
        )


def lookup(storage: Storage, source_key: str, key: str | None) -> tuple[bool, bytes | None]:
    """One storage round trip for a read: does the original exist, and the stored rendition."""
    if not storage.exists(source_key):
        return False, None
    return True, None if key is None else storage.get(key)


def check_signature(
    tenant: Tenant, image_id: str, options: RenditionOptions, signature: str | None
) -> None:
    if signature is None and tenant.allow_unsigned_reads:
        return
    if signature is None:
        raise DomainError("signature_required", "this tenant requires signed URLs (sig=)")
    if not verify(tenant.signing_secrets, tenant.id, image_id, options, signature):
        raise DomainError("invalid_signature", "the signature does not match this URL")


@dataclass(frozen=True)
class ReadPlan:
    """What a rendition URL means once parsed, verified and keyed."""

    options: RenditionOptions
    resolved: str | None  # output format; None: the original's own
    digest: str
    etag: str
    negotiated: bool


@functools.lru_cache(maxsize=8192)
def plan_read(
    tenant: Tenant,
    image_id: str,
    query: str,
    accept: str | None,
    max_dimension: int,
    encoder_version: str,
    background: tuple[int, int, int],
) -> ReadPlan:
    """Parse, check the signature, negotiate and key one rendition URL. Pure, so memoised:
    a repeated URL (every stored-rendition read) skips the parsing and HMAC work, never the
    check (only successes are remembered, and a tenant's new secrets are a new Tenant key)."""
    options, signature = parse_options(split_query(query), max_dimension)
    check_signature(tenant, image_id, options, signature)
    negotiated = options.format == "auto"
    resolved = choose_format(accept) if negotiated else options.format
    digest = rendition_digest(
        image_id, options, resolved or "original", encoder_version, background
    )
    return ReadPlan(options, resolved, digest, etag_for(digest), negotiated)
