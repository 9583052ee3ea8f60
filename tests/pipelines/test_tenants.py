"""Tenant keys for the traffic generator; the tenants file in the contract's format."""

import hashlib
import json
import stat
from pathlib import Path

from delivery import tenants
from image_contracts.tenants import parse_text
from image_service.tenants import load_tenants_file


def test_keys_are_kept_while_the_tenant_list_is_unchanged(tmp_path: Path) -> None:
    keys_file, tenants_file = tmp_path / "keys.json", tmp_path / "svc" / "tenants.toml"
    tenants.ensure(keys_file, tenants_file, ["acme", "globex"], None)
    first = json.loads(keys_file.read_text())
    written = tenants_file.read_text()
    tenants.ensure(keys_file, tenants_file, ["acme", "globex"], None)
    assert json.loads(keys_file.read_text()) == first
    assert tenants_file.read_text() == written
    tenants.ensure(keys_file, tenants_file, ["acme", "initech"], None)  # a new list: new keys
    assert [t["id"] for t in json.loads(keys_file.read_text())] == ["acme", "initech"]
    assert json.loads(keys_file.read_text())[0]["key"] != first[0]["key"]


def test_the_service_gets_hashes_only_in_a_private_file(tmp_path: Path) -> None:
    keys_file, tenants_file = tmp_path / "keys.json", tmp_path / "tenants.toml"
    tenants.ensure(keys_file, tenants_file, ["acme", "globex"], None)
    keys = {t["id"]: t["key"] for t in json.loads(keys_file.read_text())}
    text = tenants_file.read_text()
    assert all(key not in text for key in keys.values())
    entries = parse_text(text)  # what the service reads, read the service's way
    assert list(entries) == ["acme", "globex"]
    for tid, entry in entries.items():
        assert entry.api_key_sha256 == (hashlib.sha256(keys[tid].encode()).hexdigest(),)
        assert entry.allow_unsigned_reads
    for path in (keys_file, tenants_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_service_resolves_each_tenants_signing_secret_to_the_generators(
    tmp_path: Path,
) -> None:
    keys_file, tenants_file = tmp_path / "keys.json", tmp_path / "svc" / "tenants.toml"
    tenants.ensure(keys_file, tenants_file, ["acme", "globex"], None)
    given = {t["id"]: t["secret"].encode() for t in json.loads(keys_file.read_text())}
    loaded = load_tenants_file(str(tenants_file), {}, 10_000_000)  # the service's own loader
    assert {tid: t.signing_secrets for tid, t in loaded.items()} == {
        tid: (secret,) for tid, secret in given.items()
    }
    assert given["acme"] != given["globex"]
    for tid in given:
        assert stat.S_IMODE(tenants.secret_file(tenants_file, tid).stat().st_mode) == 0o600


def test_a_keys_file_from_before_signing_secrets_keeps_its_keys_and_gains_secrets(
    tmp_path: Path,
) -> None:
    keys_file, tenants_file = tmp_path / "keys.json", tmp_path / "tenants.toml"
    keys_file.write_text(json.dumps([{"id": "acme", "key": "old"}]))
    tenants.ensure(keys_file, tenants_file, ["acme"], None)
    (entry,) = json.loads(keys_file.read_text())
    assert entry["key"] == "old"  # a running service and generator still agree on it
    assert entry["secret"]
    (loaded,) = load_tenants_file(str(tenants_file), {}, 10_000_000).values()
    assert loaded.signing_secrets == (entry["secret"].encode(),)
