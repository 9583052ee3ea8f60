"""Tenants as code: parse the TOML tenants file into frozen Tenant records, and check API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from image_service.errors import ConfigError
from image_service.formats import INPUT_FORMATS

TENANT_ID = re.compile(r"[a-z0-9-]{1,63}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
DEFAULT_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "avif"})
DEFAULT_REQUESTS_PER_SECOND = 100.0
DEFAULT_MAX_STORED_BYTES = 10 * 1024**3
KNOWN_KEYS = frozenset(
    {
        "api_key_sha256",
        "signing_secrets",
        "allow_unsigned_reads",
        "allowed_formats",
        "max_upload_bytes",
        "requests_per_second",
        "max_stored_bytes",
        "share",
    }
)


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


def is_tenant_id(value: str) -> bool:
    return TENANT_ID.fullmatch(value) is not None


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


def _positive(tid: str, table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"tenant {tid}: {key} must be a positive number")
    return float(value)


def parse_tenant(
    tid: str,
    table: Mapping[str, Any],
    resolve: Callable[[str], bytes],
    max_upload_bytes: int,
) -> Tenant:
    if not is_tenant_id(tid):
        raise ConfigError(f"tenant id {tid!r} must match [a-z0-9-]{{1,63}}")
    unknown = set(table) - KNOWN_KEYS
    if unknown:
        raise ConfigError(f"tenant {tid}: unknown keys {sorted(unknown)}")
    hashes = table.get("api_key_sha256", [])
    if not isinstance(hashes, list) or not hashes:
        raise ConfigError(f"tenant {tid}: api_key_sha256 must be a non-empty list")
    for h in hashes:
        if not isinstance(h, str) or not SHA256_HEX.fullmatch(h):
            raise ConfigError(f"tenant {tid}: api_key_sha256 entries must be 64 lowercase hex")
    refs = table.get("signing_secrets", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ConfigError(f"tenant {tid}: signing_secrets must be a list of strings")
    unsigned = table.get("allow_unsigned_reads", False)
    if not isinstance(unsigned, bool):
        raise ConfigError(f"tenant {tid}: allow_unsigned_reads must be true or false")
    if not refs and not unsigned:
        raise ConfigError(f"tenant {tid}: needs signing_secrets or allow_unsigned_reads = true")
    formats = table.get("allowed_formats", sorted(DEFAULT_FORMATS))
    if not isinstance(formats, list) or not formats:
        raise ConfigError(f"tenant {tid}: allowed_formats must be a non-empty list")
    bad = [f for f in formats if f not in INPUT_FORMATS]
    if bad:
        # SVG (and anything else) is refused here: the service only loads formats it sniffs.
        raise ConfigError(
            f"tenant {tid}: unsupported formats {bad}; known: {sorted(INPUT_FORMATS)}"
        )
    upload = int(_positive(tid, table, "max_upload_bytes", max_upload_bytes))
    return Tenant(
        id=tid,
        api_key_sha256=frozenset(hashes),
        signing_secrets=tuple(resolve(r) for r in refs),
        allow_unsigned_reads=unsigned,
        allowed_formats=frozenset(formats),
        # The global limit stays a hard cap: a tenant can only lower it.
        max_upload_bytes=min(upload, max_upload_bytes),
        requests_per_second=_positive(
            tid, table, "requests_per_second", DEFAULT_REQUESTS_PER_SECOND
        ),
        max_stored_bytes=int(_positive(tid, table, "max_stored_bytes", DEFAULT_MAX_STORED_BYTES)),
        share=_positive(tid, table, "share", 1.0),
    )


def parse_tenants(
    document: Mapping[str, Any], resolve: Callable[[str], bytes], max_upload_bytes: int
) -> dict[str, Tenant]:
    tables = document.get("tenants")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError("tenants file needs at least one [tenants.<id>] table")
    out: dict[str, Tenant] = {}
    for tid, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"tenants.{tid} must be a table")
        out[tid] = parse_tenant(tid, table, resolve, max_upload_bytes)
    return out


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
