"""The tenants file: one TOML document, `[tenants.<id>]` tables, read by the service, summarised
by the platform and written by the local environment.

This module owns its syntax: the known keys and their types. Meanings that need a running
service (resolving secret references, the formats libvips can load, the service's own limits)
stay in the service. `parse_document` and `dump_document` round-trip: what one package writes,
every other package reads the same way.
"""

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

TENANT_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # a DNS label: also a label value
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
SECRET_REF = re.compile(r"(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)")
# A cell's name: a DNS label short enough to suffix stack names, hostnames and label values.
CELL_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?")


class TenantsFileError(ValueError):
    """The document breaks the tenants-file contract; the message says where and why."""


@dataclass(frozen=True)
class TenantEntry:
    """One `[tenants.<id>]` table as written: optional fields are None when absent, so each
    reader applies its own defaults and a writer never invents values."""

    id: str
    api_key_sha256: tuple[str, ...]
    signing_secrets: tuple[str, ...] = ()  # references (env:NAME or file:/path), never secrets
    allow_unsigned_reads: bool = False
    allowed_formats: tuple[str, ...] | None = None
    max_upload_bytes: int | None = None
    requests_per_second: float | None = None
    max_stored_bytes: int | None = None
    share: float | None = None  # weight of the tenant's fair share of the service (default 1)
    cell: str | None = None  # the cell that serves this tenant (docs/cells.md); None: not placed
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)


# Key name -> the Python types its value may have (bool is not an int here).
_SCALARS: dict[str, tuple[type, ...]] = {
    "allow_unsigned_reads": (bool,),
    "max_upload_bytes": (int,),
    "requests_per_second": (int, float),
    "max_stored_bytes": (int,),
    "share": (int, float),
}
_LISTS = ("api_key_sha256", "signing_secrets", "allowed_formats")
KNOWN_KEYS = frozenset({*_SCALARS, *_LISTS, "cell"})


def is_tenant_id(value: str) -> bool:
    return TENANT_ID.fullmatch(value) is not None


def _strings(tid: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TenantsFileError(f"tenant {tid}: {key} must be a list of strings")
    return tuple(value)


def _scalar(tid: str, key: str, value: object) -> Any:
    allowed = _SCALARS[key]
    if isinstance(value, bool) and bool not in allowed:
        raise TenantsFileError(f"tenant {tid}: {key} must be a number, not true/false")
    if not isinstance(value, allowed):
        kind = "true or false" if bool in allowed else "a number"
        raise TenantsFileError(f"tenant {tid}: {key} must be {kind}")
    if isinstance(value, int | float) and not isinstance(value, bool) and not 0 < value < math.inf:
        raise TenantsFileError(f"tenant {tid}: {key} must be a positive number")
    return value


def parse_entry(tid: str, table: Mapping[str, Any], *, allow_extra: bool = False) -> TenantEntry:
    if not is_tenant_id(tid):
        raise TenantsFileError(
            f"tenant id {tid!r} must be 1-63 of [a-z0-9-], starting and ending alphanumeric"
        )
    extra = {k: v for k, v in table.items() if k not in KNOWN_KEYS}
    if extra and not allow_extra:
        raise TenantsFileError(f"tenant {tid}: unknown keys {sorted(extra)}")
    hashes = _strings(tid, "api_key_sha256", table.get("api_key_sha256", []))
    if not hashes:
        raise TenantsFileError(f"tenant {tid}: api_key_sha256 must be a non-empty list")
    if not all(SHA256_HEX.fullmatch(h) for h in hashes):
        raise TenantsFileError(f"tenant {tid}: api_key_sha256 entries must be 64 lowercase hex")
    refs = _strings(tid, "signing_secrets", table.get("signing_secrets", []))
    bad_refs = [r for r in refs if not SECRET_REF.fullmatch(r)]
    if bad_refs:
        raise TenantsFileError(
            f"tenant {tid}: signing secret {bad_refs[0]!r} must be env:NAME or file:/path"
        )
    formats = table.get("allowed_formats")
    cell = table.get("cell")
    if cell is not None and (not isinstance(cell, str) or not CELL_NAME.fullmatch(cell)):
        raise TenantsFileError(
            f"tenant {tid}: cell {cell!r} must be 1-32 of [a-z0-9-], starting and ending "
            "alphanumeric"
        )
    scalars = {k: _scalar(tid, k, table[k]) for k in _SCALARS if k in table}
    entry = TenantEntry(
        id=tid,
        api_key_sha256=hashes,
        signing_secrets=refs,
        allowed_formats=None if formats is None else _strings(tid, "allowed_formats", formats),
        cell=cell,
        extra=extra,
        **scalars,
    )
    if entry.allowed_formats == ():
        raise TenantsFileError(f"tenant {tid}: allowed_formats must be a non-empty list")
    if not entry.signing_secrets and not entry.allow_unsigned_reads:
        raise TenantsFileError(
            f"tenant {tid}: needs signing_secrets or allow_unsigned_reads = true"
        )
    return entry


def parse_document(
    document: Mapping[str, Any], *, allow_extra: bool = False
) -> dict[str, TenantEntry]:
    """Entries by id, in file order. `allow_extra` keeps unknown keys (a reader older than the
    writer) instead of refusing them."""
    tables = document.get("tenants")
    if not isinstance(tables, dict) or not tables:
        raise TenantsFileError("tenants file needs at least one [tenants.<id>] table")
    unknown_top = set(document) - {"tenants"}
    if unknown_top:
        raise TenantsFileError(f"tenants file: unknown top-level keys {sorted(unknown_top)}")
    out: dict[str, TenantEntry] = {}
    for tid, table in tables.items():
        if not isinstance(table, dict):
            raise TenantsFileError(f"tenants.{tid} must be a table")
        out[tid] = parse_entry(tid, table, allow_extra=allow_extra)
    return out


def parse_text(text: str, *, allow_extra: bool = False) -> dict[str, TenantEntry]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TenantsFileError(f"tenants file is not valid TOML: {exc}") from None
    return parse_document(document, allow_extra=allow_extra)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string without ASCII escaping is a valid TOML basic string for the characters
        # this contract allows (the round-trip check in dump_document guards the rest).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the tenants file")


def dump_document(entries: Mapping[str, TenantEntry] | list[TenantEntry]) -> str:
    """The TOML text of these entries; refuses anything that would not read back identically."""
    items = list(entries.values()) if isinstance(entries, Mapping) else list(entries)
    lines: list[str] = []
    for entry in items:
        lines.append(f"[tenants.{entry.id}]")
        for f in fields(TenantEntry):
            value = getattr(entry, f.name)
            if f.name in {"id", "extra"} or value is None:
                continue
            if f.name in {"signing_secrets"} and not value:
                continue
            lines.append(f"{f.name} = {_toml_value(value)}")
        for key, value in entry.extra.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    text = "\n".join(lines)
    if parse_text(text, allow_extra=True) != {e.id: e for e in items}:
        raise TenantsFileError("tenants entries do not survive a round trip through TOML")
    return text
