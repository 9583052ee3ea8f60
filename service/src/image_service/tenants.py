"""Tenants as code: parse the TOML tenants file into frozen Tenant records, and check API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from image_contracts import tenants as contract
from image_contracts.tenants import TenantEntry

from image_service.errors import ConfigError
from image_service.formats import INPUT_FORMATS

DEFAULT_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "avif"})
DEFAULT_REQUESTS_PER_SECOND = 100.0
DEFAULT_MAX_STORED_BYTES = 10 * 1024**3


@dataclass(frozen=True)
class Tenant:
    id: str
    api_key_sha256: frozenset[str]
    signing_secrets: tuple[bytes, ...]
    allow_unsigned_reads: bool
    allowed_formats: frozenset[str]
    max_upload_bytes: int
    requests_per_second: float
    max_stored_bytes: int
    share: float = 1.0  # weight of the tenant's fair share of workers, queue and uploads


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_matches(tenant: Tenant, api_key: str) -> bool:
    """Constant-time comparison against every configured hash (several during key rotation)."""
    digest = hash_key(api_key)
    found = False
    for known in tenant.api_key_sha256:
        found |= hmac.compare_digest(digest, known)
    return found


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def resolve_secret_ref(ref: str, env: Mapping[str, str]) -> bytes:
    """`env:NAME` reads an environment variable, `file:/path` a secret file (stripped)."""
    kind, _, target = ref.partition(":")
    if kind == "env" and target:
        value = env.get(target)
        if not value:
            raise ConfigError(f"signing secret {ref!r}: environment variable {target} is unset")
        return value.encode()
    if kind == "file" and target:
        try:
            value = Path(target).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"signing secret {ref!r}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"signing secret {ref!r}: file is empty")
        return value.encode()
    raise ConfigError(f"signing secret {ref!r} must be env:NAME or file:/path")


def tenant_from_entry(
    entry: TenantEntry, resolve: Callable[[str], bytes], max_upload_bytes: int
) -> Tenant:
    """The file's syntax is the contract's (image_contracts.tenants); meanings are the service's:
    defaults, the formats it can load, and its global upload cap."""
    formats = entry.allowed_formats or tuple(sorted(DEFAULT_FORMATS))
    bad = [f for f in formats if f not in INPUT_FORMATS]
    if bad:
        # SVG (and anything else) is refused here: the service only loads formats it sniffs.
        raise ConfigError(
            f"tenant {entry.id}: unsupported formats {bad}; known: {sorted(INPUT_FORMATS)}"
        )
    upload = entry.max_upload_bytes or max_upload_bytes
    return Tenant(
        id=entry.id,
        api_key_sha256=frozenset(entry.api_key_sha256),
        signing_secrets=tuple(resolve(r) for r in entry.signing_secrets),
        allow_unsigned_reads=entry.allow_unsigned_reads,
        allowed_formats=frozenset(formats),
        # The global limit stays a hard cap: a tenant can only lower it.
        max_upload_bytes=min(upload, max_upload_bytes),
        requests_per_second=float(entry.requests_per_second or DEFAULT_REQUESTS_PER_SECOND),
        max_stored_bytes=entry.max_stored_bytes or DEFAULT_MAX_STORED_BYTES,
        share=float(entry.share or 1.0),
    )


def parse_tenants(
    document: Mapping[str, Any], resolve: Callable[[str], bytes], max_upload_bytes: int
) -> dict[str, Tenant]:
    try:
        entries = contract.parse_document(document)
    except contract.TenantsFileError as exc:
        raise ConfigError(str(exc)) from None
    return {
        tid: tenant_from_entry(entry, resolve, max_upload_bytes) for tid, entry in entries.items()
    }


def load_tenants_file(
    path: str, env: Mapping[str, str], max_upload_bytes: int
) -> dict[str, Tenant]:
    try:
        document = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"tenants file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"tenants file {path}: {exc}") from None
    return parse_tenants(document, lambda ref: resolve_secret_ref(ref, env), max_upload_bytes)


def demo_tenant(api_key: str | None, max_upload_bytes: int) -> tuple[Tenant, str]:
    """The tenant used when no tenants file is configured; returns it with its plain key."""
    key = api_key or secrets.token_urlsafe(24)
    tenant = Tenant(
        id="demo",
        api_key_sha256=frozenset({hash_key(key)}),
        signing_secrets=(hashlib.sha256(b"demo-signing:" + key.encode()).hexdigest().encode(),),
        allow_unsigned_reads=True,
        allowed_formats=DEFAULT_FORMATS,
        max_upload_bytes=max_upload_bytes,
        requests_per_second=DEFAULT_REQUESTS_PER_SECOND,
        max_stored_bytes=DEFAULT_MAX_STORED_BYTES,
    )
    return tenant, key
