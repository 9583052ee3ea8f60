"""The tenants file: what the contract writes, the service and the platform read the same way."""

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from image_contracts.tenants import (
    TenantEntry,
    TenantsFileError,
    dump_document,
    parse_text,
)
from image_service.errors import ConfigError
from image_service.tenants import hash_key, key_matches, load_tenants_file
from infra.config import SIGNING_DIR
from infra.config import ConfigError as PlatformConfigError
from infra.config import parse_tenants as platform_tenants

ids = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


def entry(tid: str, key: str, **fields: object) -> TenantEntry:
    return TenantEntry(id=tid, api_key_sha256=(hash_key(key),), **fields)  # type: ignore[arg-type]


@given(st.lists(ids, min_size=1, max_size=5, unique=True), st.booleans())
def test_written_file_reads_back_identically_everywhere(
    tenant_ids: list[str], unsigned: bool
) -> None:
    entries = [
        entry(
            tid,
            f"key-{tid}",
            allow_unsigned_reads=True,
            signing_secrets=() if unsigned else ("env:SIGNING_KEY",),
            requests_per_second=1000,
            max_upload_bytes=1024 * 1024,
        )
        for tid in tenant_ids
    ]
    text = dump_document(entries)
    assert list(parse_text(text)) == tenant_ids
    path = Path(f"/tmp/tenants-{hashlib.sha256(text.encode()).hexdigest()[:12]}.toml")
    path.write_text(text)
    try:
        env = {"SIGNING_KEY": "s3cret"}
        service = load_tenants_file(str(path), env, max_upload_bytes=25 * 1024 * 1024)
    finally:
        path.unlink()
    assert list(service) == tenant_ids
    for tid in tenant_ids:
        # The service authenticates with the plain key whose hash the writer stored.
        assert key_matches(service[tid], f"key-{tid}")
        assert not key_matches(service[tid], f"key-{tid}x")
        assert service[tid].max_upload_bytes == 1024 * 1024
        assert service[tid].requests_per_second == 1000.0
    if unsigned:
        platform_ids, _ = platform_tenants(text)
        assert list(platform_ids) == tenant_ids
    else:
        # The platform mounts the secrets it generates, so it refuses any other reference.
        with pytest.raises(PlatformConfigError, match="platform generates and mounts"):
            platform_tenants(text)


def test_platform_and_service_refuse_the_same_broken_files(tmp_path: Path) -> None:
    head = f'[tenants.a]\napi_key_sha256 = ["{hashlib.sha256(b"k").hexdigest()}"]\n'
    unsigned = head + "allow_unsigned_reads = true\n"
    broken = [
        unsigned.replace("tenants.a", 'tenants."Upper"'),
        head,  # neither signed nor unsigned
        '[tenants.a]\napi_key_sha256 = ["nothex"]\nallow_unsigned_reads = true\n',
        "[tenants.a]\napi_key_sha256 = []\nallow_unsigned_reads = true\n",
        head + 'allow_unsigned_reads = "yes"\n',
        unsigned + "max_upload_bytes = true\n",
        unsigned + "bogus = 1\n",
        unsigned + "requests_per_second = nan\n",
        unsigned + "max_stored_bytes = -5\n",
        unsigned + 'signing_secrets = ["hunter2"]\n',
        "tenants = 1\n",
        "[tenants.a\n",
    ]
    for text in broken:
        with pytest.raises(TenantsFileError):
            parse_text(text)
        path = tmp_path / "tenants.toml"
        path.write_text(text)
        with pytest.raises(ConfigError):
            load_tenants_file(str(path), {}, max_upload_bytes=1000)
        with pytest.raises(PlatformConfigError):
            platform_tenants(text)


def test_signing_secret_references_survive_and_never_hold_secrets() -> None:
    ref = f"file:{SIGNING_DIR}/acme"
    text = dump_document([entry("acme", "k", signing_secrets=(ref,))])
    assert parse_text(text)["acme"].signing_secrets == (ref,)
    _, names = platform_tenants(text)
    assert names == ("acme",)
    with pytest.raises(TenantsFileError, match="env:NAME or file:/path"):
        dump_document([entry("acme", "k", signing_secrets=("plain-secret-value",))])


def test_writer_refuses_what_would_not_read_back() -> None:
    with pytest.raises(TenantsFileError):
        dump_document([entry("acme", "k")])  # neither signing secrets nor unsigned reads
    with pytest.raises(TenantsFileError, match="tenant id"):
        dump_document([entry("Acme", "k", allow_unsigned_reads=True)])


def test_cell_is_optional_and_round_trips_everywhere(tmp_path: Path) -> None:
    """Files written before cells existed read as unplaced; a placed tenant keeps its cell
    through the writer, and the service and the platform accept it."""
    unplaced = dump_document([entry("acme", "k", allow_unsigned_reads=True)])
    assert "cell" not in unplaced
    assert parse_text(unplaced)["acme"].cell is None
    placed = [
        entry("acme", "k", allow_unsigned_reads=True, cell="prod-a"),
        entry("globex", "k2", allow_unsigned_reads=True),
    ]
    text = dump_document(placed)
    assert 'cell = "prod-a"' in text
    read = parse_text(text)
    assert read["acme"].cell == "prod-a"
    assert read["globex"].cell is None
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    assert list(load_tenants_file(str(path), {}, max_upload_bytes=1000)) == ["acme", "globex"]
    assert platform_tenants(text)[0] == ("acme", "globex")


@pytest.mark.parametrize("cell", ['"Prod_A"', '""', '"-a"', "1", f'"{"a" * 33}"'])
def test_a_bad_cell_is_refused_by_every_reader(cell: str, tmp_path: Path) -> None:
    head = f'[tenants.a]\napi_key_sha256 = ["{hashlib.sha256(b"k").hexdigest()}"]\n'
    text = head + f"allow_unsigned_reads = true\ncell = {cell}\n"
    with pytest.raises(TenantsFileError, match="cell"):
        parse_text(text)
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_tenants_file(str(path), {}, max_upload_bytes=1000)
    with pytest.raises(PlatformConfigError):
        platform_tenants(text)
