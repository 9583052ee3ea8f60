"""Settings from the environment, tenants from TOML, and fault-injection decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from image_service import faults
from image_service.config import Faults, Settings, settings_from_env
from image_service.errors import ConfigError
from image_service.tenants import (
    bearer_key,
    demo_tenant,
    hash_key,
    key_matches,
    load_tenants_file,
    resolve_secret_ref,
)


def test_defaults_with_no_environment() -> None:
    settings = settings_from_env({}, cpu_count=2)
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert (settings.track, settings.version, settings.environment) == ("stable", "dev", "local")
    assert settings.workers == 2
    assert settings.queue_size == 8
    assert settings.limits.max_upload_bytes == 25 * 1024 * 1024
    assert settings.limits.max_input_pixels == 50_000_000
    assert settings.limits.max_processing_seconds == 10.0
    assert not settings.faults.enabled


def test_every_variable_is_read() -> None:
    env = {
        "IMAGE_SERVICE_HOST": "0.0.0.0",
        "IMAGE_SERVICE_PORT": "9000",
        "IMAGE_SERVICE_TRACK": "canary",
        "IMAGE_SERVICE_VERSION": "0123abc",
        "IMAGE_SERVICE_STORAGE": "s3://bucket/prefix",
        "IMAGE_SERVICE_S3_ENDPOINT": "http://127.0.0.1:5000",
        "IMAGE_SERVICE_TENANTS_FILE": "/etc/tenants.toml",
        "IMAGE_SERVICE_ENVIRONMENT": "staging",
        "IMAGE_SERVICE_FAULT_ERROR_RATE": "0.25",
        "IMAGE_SERVICE_FAULT_LATENCY_MS": "150",
        "IMAGE_SERVICE_FAULT_TENANT": "acme",
        "IMAGE_SERVICE_WORKERS": "3",
        "IMAGE_SERVICE_QUEUE_SIZE": "5",
        "IMAGE_SERVICE_MAX_UPLOAD_BYTES": "1000",
        "IMAGE_SERVICE_MAX_INPUT_PIXELS": "2000",
        "IMAGE_SERVICE_MAX_OUTPUT_DIMENSION": "300",
        "IMAGE_SERVICE_MAX_FRAMES": "4",
        "IMAGE_SERVICE_MAX_PROCESSING_SECONDS": "2.5",
        "IMAGE_SERVICE_BACKGROUND": "00ff80",
        "IMAGE_SERVICE_DRAIN_SECONDS": "3",
        "IMAGE_SERVICE_GRACE_SECONDS": "7",
        "IMAGE_SERVICE_DEMO_KEY": "k",
        "IMAGE_SERVICE_LOG_LEVEL": "debug",
        "IMAGE_SERVICE_MAX_METADATA_BYTES": "5000",
        "IMAGE_SERVICE_MAX_HEADER_BYTES": "2048",
        "IMAGE_SERVICE_MAX_HEADERS": "20",
    }
    s = settings_from_env(env)
    assert (s.host, s.port, s.track, s.version) == ("0.0.0.0", 9000, "canary", "0123abc")
    assert (s.storage, s.s3_endpoint) == ("s3://bucket/prefix", "http://127.0.0.1:5000")
    assert s.tenants_file == "/etc/tenants.toml"
    assert s.faults == Faults(0.25, 150, "acme")
    assert (s.workers, s.queue_size) == (3, 5)
    assert s.limits.max_upload_bytes == 1000
    assert s.limits.max_input_pixels == 2000
    assert s.limits.max_output_dimension == 300
    assert s.limits.max_frames == 4
    assert s.limits.max_processing_seconds == 2.5
    assert (s.limits.max_metadata_bytes, s.limits.max_header_bytes) == (5000, 2048)
    assert s.limits.max_headers == 20
    assert s.background == (0, 255, 128)
    assert (s.drain_seconds, s.grace_seconds, s.demo_key, s.log_level) == (3, 7, "k", "debug")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMAGE_SERVICE_PORT", "http"),
        ("IMAGE_SERVICE_PORT", "70000"),
        ("IMAGE_SERVICE_TRACK", "beta"),
        ("IMAGE_SERVICE_VERSION", "a b"),
        ("IMAGE_SERVICE_FAULT_ERROR_RATE", "1.5"),
        ("IMAGE_SERVICE_FAULT_LATENCY_MS", "-1"),
        ("IMAGE_SERVICE_WORKERS", "0"),
        ("IMAGE_SERVICE_BACKGROUND", "white"),
        ("IMAGE_SERVICE_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_are_refused_with_the_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        settings_from_env({name: value})


@pytest.mark.parametrize("environment", ["prod", "production", "PROD"])
def test_fault_injection_is_refused_in_production(environment: str) -> None:
    for fault in (
        {"IMAGE_SERVICE_FAULT_ERROR_RATE": "0.1"},
        {"IMAGE_SERVICE_FAULT_LATENCY_MS": "10"},
        {"IMAGE_SERVICE_FAULT_TENANT": "acme"},
    ):
        with pytest.raises(ConfigError, match="fault injection is refused"):
            settings_from_env({"IMAGE_SERVICE_ENVIRONMENT": environment, **fault})
    assert settings_from_env({"IMAGE_SERVICE_ENVIRONMENT": environment}).environment == environment


def test_fault_decisions() -> None:
    off = Faults()
    assert faults.decide(off, "acme", 0.0) == faults.NO_FAULT
    errors = Faults(error_rate=0.3)
    assert faults.decide(errors, "acme", 0.29).error
    assert not faults.decide(errors, "acme", 0.3).error
    slow_acme = Faults(latency_ms=250, tenant="acme")
    assert faults.decide(slow_acme, "acme", 0.9) == faults.FaultDecision(0.25, False)
    assert faults.decide(slow_acme, "beta", 0.0) == faults.NO_FAULT


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    return str(path)


def test_tenants_file_with_secrets_from_env_and_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    path = write(
        tmp_path,
        f"""
[tenants.shop-1]
api_key_sha256 = ["{hash_key("k")}"]
signing_secrets = ["env:SHOP_SECRET", "file:{secret_file}"]
allowed_formats = ["jpeg"]
max_upload_bytes = 1_000
requests_per_second = 5
max_stored_bytes = 10_000
""",
    )
    tenants = load_tenants_file(path, {"SHOP_SECRET": "from-env"}, max_upload_bytes=500)
    shop = tenants["shop-1"]
    assert shop.signing_secrets == (b"from-env", b"from-file")
    assert shop.allowed_formats == frozenset({"jpeg"})
    assert shop.max_upload_bytes == 500  # the global limit caps the tenant's
    assert (shop.requests_per_second, shop.max_stored_bytes) == (5.0, 10_000)
    assert not shop.allow_unsigned_reads
    assert key_matches(shop, "k")
    assert not key_matches(shop, "K")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[tenants.Bad_Id]\napi_key_sha256 = ['{h}']\nallow_unsigned_reads = true", "tenant id"),
        ("[tenants.a]\napi_key_sha256 = ['nothex']\nallow_unsigned_reads = true", "64 lowercase"),
        ("[tenants.a]\napi_key_sha256 = []\nallow_unsigned_reads = true", "non-empty"),
        ("[tenants.a]\napi_key_sha256 = ['{h}']", "signing_secrets or allow_unsigned_reads"),
        ("[tenants.a]\napi_key_sha256 = ['{h}']\nsigning_secrets = ['env:MISSING']", "unset"),
        ("[tenants.a]\napi_key_sha256 = ['{h}']\nsigning_secrets = ['plain']", "env:NAME"),
        ("{H}\nsigning_secrets = ['file:/nonexistent']", "No such"),
        (
            "[tenants.a]\napi_key_sha256 = ['{h}']\nallow_unsigned_reads = true\n"
            "allowed_formats = ['svg']",
            "unsupported formats",
        ),
        ("{H}\nallow_unsigned_reads = true\nqouta = 1", "unknown"),
        (
            "[tenants.a]\napi_key_sha256 = ['{h}']\nallow_unsigned_reads = true\n"
            "requests_per_second = -1",
            "positive",
        ),
        ("tenants = 1", "at least one"),
        ("[tenants.a", "tenants file"),
    ],
)
def test_bad_tenants_files_are_refused(tmp_path: Path, body: str, message: str) -> None:
    body = body.replace("{H}", "[tenants.a]\napi_key_sha256 = ['{h}']")
    path = write(tmp_path, body.replace("{h}", hash_key("k")))
    with pytest.raises(ConfigError, match=message):
        load_tenants_file(path, {}, max_upload_bytes=100)


def test_missing_tenants_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_tenants_file(str(tmp_path / "absent.toml"), {}, 100)


def test_secret_refs() -> None:
    assert resolve_secret_ref("env:X", {"X": "y"}) == b"y"
    with pytest.raises(ConfigError):
        resolve_secret_ref("env:", {})


def test_bearer_parsing() -> None:
    assert bearer_key("Bearer abc") == "abc"
    assert bearer_key("bearer  abc ") == "abc"
    assert bearer_key("Basic abc") is None
    assert bearer_key("Bearer ") is None
    assert bearer_key(None) is None


def test_demo_tenant() -> None:
    tenant, key = demo_tenant(None, 100)
    assert tenant.id == "demo"
    assert tenant.allow_unsigned_reads
    assert key_matches(tenant, key)
    fixed, same = demo_tenant("chosen", 100)
    assert same == "chosen"
    assert key_matches(fixed, "chosen")
    assert Settings().tenants_file is None


def test_share_is_optional_and_weighted(tmp_path: Path) -> None:
    body = """
[tenants.old]
api_key_sha256 = ["{h}"]
allow_unsigned_reads = true

[tenants.big]
api_key_sha256 = ["{h}"]
allow_unsigned_reads = true
share = 3
"""
    path = write(tmp_path, body.replace("{h}", hash_key("k")))
    tenants = load_tenants_file(path, {}, max_upload_bytes=500)
    assert tenants["old"].share == 1.0  # a file written before shares existed reads the same
    assert tenants["big"].share == 3.0


@pytest.mark.parametrize("value", ["0", "-1", "true", '"2"'])
def test_share_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    body = f'[tenants.a]\napi_key_sha256 = ["{hash_key("k")}"]\nallow_unsigned_reads = true\n'
    path = write(tmp_path, body + f"share = {value}\n")
    with pytest.raises(ConfigError, match="share"):
        load_tenants_file(path, {}, max_upload_bytes=500)
