"""The local environment's tenants: API keys and signing secrets for the traffic generator, key
hashes and secret files for the service.

The keys file (`tenant-keys.json`, 0600) stays with the deliverer; the service gets the tenants
file, which holds the keys' SHA-256 hashes and points at one signing-secret file per tenant
(0600, the service's user). Keys are kept across runs while the tenant list is unchanged, so a
restarted service and a running traffic generator still agree.
"""

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from image_contracts.tenants import TenantEntry, dump_document

from delivery import privilege

# Generous for the synthetic traffic: the judge, not the rate limiter, should see every request.
REQUESTS_PER_SECOND = 1000


@dataclass(frozen=True)
class TenantKey:
    id: str
    key: str
    secret: str  # the tenant's URL-signing secret: reads may be signed or not (both allowed)


def keys(keys_file: Path, tenant_ids: Sequence[str]) -> tuple[tuple[TenantKey, ...], bool]:
    """The tenants' keys, and whether they are new (then the tenants file must be rewritten)."""
    if keys_file.exists():
        entries = json.loads(keys_file.read_text())
        if [t.get("id") for t in entries] == list(tenant_ids):
            if all("secret" in t for t in entries):
                return tuple(TenantKey(t["id"], t["key"], t["secret"]) for t in entries), False
            # A keys file from before signing secrets: keep the keys (running processes know
            # them), add the secrets.
            return _write(keys_file, [TenantKey(t["id"], t["key"], _secret()) for t in entries])
    return _write(
        keys_file, [TenantKey(t, secrets.token_urlsafe(24), _secret()) for t in tenant_ids]
    )


def _secret() -> str:
    return secrets.token_urlsafe(32)


def _write(keys_file: Path, fresh: Sequence[TenantKey]) -> tuple[tuple[TenantKey, ...], bool]:
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump([{"id": t.id, "key": t.key, "secret": t.secret} for t in fresh], handle)
    return tuple(fresh), True


def secret_file(tenants_file: Path, tenant: str) -> Path:
    """Where the service reads `tenant`'s signing secret (beside its tenants file)."""
    return tenants_file.parent / "secrets" / f"{tenant}.secret"


def render(tenant_keys: Sequence[TenantKey], tenants_file: Path) -> str:
    """The service's tenants file (the contract's format): each tenant with its key's hash and
    its signing-secret file; unsigned reads stay allowed, so traffic can send both kinds."""
    return dump_document(
        [
            TenantEntry(
                id=t.id,
                api_key_sha256=(hashlib.sha256(t.key.encode()).hexdigest(),),
                signing_secrets=(f"file:{secret_file(tenants_file, t.id)}",),
                allow_unsigned_reads=True,
                requests_per_second=REQUESTS_PER_SECOND,
            )
            for t in tenant_keys
        ]
    )


def ensure(
    keys_file: Path, tenants_file: Path, tenant_ids: Sequence[str], user: str | None
) -> None:
    """Keys for every tenant, and the service's tenants file to match (0600, the service's)."""
    tenant_keys, fresh = keys(keys_file, tenant_ids)
    if fresh or not tenants_file.exists():
        secrets_dir = secret_file(tenants_file, "-").parent
        secrets_dir.mkdir(parents=True, exist_ok=True)
        privilege.hand_over(secrets_dir, user)
        for t in tenant_keys:
            privilege.write_private(secret_file(tenants_file, t.id), t.secret, user)
        # Key hashes only, yet still the service's secret material.
        privilege.write_private(tenants_file, render(tenant_keys, tenants_file), user)
