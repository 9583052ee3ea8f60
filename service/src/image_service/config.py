"""Settings from environment variables: one pure function from a mapping to frozen dataclasses."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from image_contracts.tracks import TRACKS
from image_contracts.versions import version_error

from image_service.errors import ConfigError

PRODUCTION_NAMES = frozenset({"prod", "production"})


@dataclass(frozen=True)
class Limits:
    """Hard limits; every one is checked as early and as cheaply as possible."""

    max_upload_bytes: int = 25 * 1024 * 1024
    max_input_pixels: int = 50_000_000  # width * height * frames
    max_output_dimension: int = 8192  # per side, after dpr
    max_frames: int = 200
    max_processing_seconds: float = 10.0
    # AV1 encodes cannot be interrupted: cap their pixels and effort (measured: ADR 091).
    max_avif_pixels: int = 4_000_000
    avif_effort: int = 1  # libvips 0 (fastest) .. 9; 1 is aom speed 8, imgproxy's advice
    body_timeout_seconds: float = 60.0  # the whole upload body must arrive within this
    max_metadata_bytes: int = 4 * 1024 * 1024  # EXIF + XMP + ICC + text, inflated
    max_header_bytes: int = 32 * 1024  # all request headers together
    max_headers: int = 100


@dataclass(frozen=True)
class Faults:
    """Fault injection for canary tests. Off unless a rate or latency is set."""

    error_rate: float = 0.0
    latency_ms: int = 0
    tenant: str | None = None

    @property
    def enabled(self) -> bool:
        return self.error_rate > 0 or self.latency_ms > 0


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    track: str = "stable"
    version: str = "dev"
    environment: str = "local"
    storage: str = ".state/image-service"
    s3_endpoint: str | None = None
    tenants_file: str | None = None
    demo_key: str | None = None
    workers: int = 2
    queue_size: int = 8
    background: tuple[int, int, int] = (255, 255, 255)
    drain_seconds: float = 0.0
    grace_seconds: float = 25.0
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)


_N = TypeVar("_N", int, float)


def _number(
    env: Mapping[str, str], name: str, default: _N, low: _N, high: _N, kind: type[_N]
) -> _N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {noun}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside {low}..{high}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return _number(env, name, default, low, high, int)


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low, high, float)


def _background(raw: str) -> tuple[int, int, int]:
    if not re.fullmatch(r"[0-9a-fA-F]{6}", raw):
        raise ConfigError(f"IMAGE_SERVICE_BACKGROUND={raw!r} must be 6 hex digits, e.g. ffffff")
    return (int(raw[0:2], 16), int(raw[2:4], 16), int(raw[4:6], 16))


def settings_from_env(env: Mapping[str, str], cpu_count: int | None = None) -> Settings:
    """Read and validate every IMAGE_SERVICE_* variable; raise ConfigError with the reason."""
    cpus = cpu_count or os.cpu_count() or 1
    track = env.get("IMAGE_SERVICE_TRACK", "stable")
    if track not in TRACKS:
        raise ConfigError(f"IMAGE_SERVICE_TRACK={track!r} must be one of {sorted(TRACKS)}")
    version = env.get("IMAGE_SERVICE_VERSION", "dev") or "dev"
    version_problem = version_error(version)
    if version_problem:
        raise ConfigError(f"IMAGE_SERVICE_VERSION: {version_problem}")
    environment = env.get("IMAGE_SERVICE_ENVIRONMENT", "local") or "local"
    fault_tenant = env.get("IMAGE_SERVICE_FAULT_TENANT") or None
    faults = Faults(
        error_rate=_float(env, "IMAGE_SERVICE_FAULT_ERROR_RATE", 0.0, 0.0, 1.0),
        latency_ms=_int(env, "IMAGE_SERVICE_FAULT_LATENCY_MS", 0, 0, 600_000),
        tenant=fault_tenant,
    )
    if environment.lower() in PRODUCTION_NAMES and (faults.enabled or fault_tenant):
        raise ConfigError(
            f"fault injection is refused in environment {environment!r}: "
            "unset IMAGE_SERVICE_FAULT_ERROR_RATE, _LATENCY_MS and _TENANT"
        )
    workers = _int(env, "IMAGE_SERVICE_WORKERS", cpus, 1, 256)
    limits = Limits(
        max_upload_bytes=_int(
            env, "IMAGE_SERVICE_MAX_UPLOAD_BYTES", Limits.max_upload_bytes, 1, 1 << 31
        ),
        max_input_pixels=_int(
            env, "IMAGE_SERVICE_MAX_INPUT_PIXELS", Limits.max_input_pixels, 1, 1 << 34
        ),
        max_output_dimension=_int(
            env, "IMAGE_SERVICE_MAX_OUTPUT_DIMENSION", Limits.max_output_dimension, 1, 65_535
        ),
        max_frames=_int(env, "IMAGE_SERVICE_MAX_FRAMES", Limits.max_frames, 1, 10_000),
        max_processing_seconds=_float(
            env, "IMAGE_SERVICE_MAX_PROCESSING_SECONDS", Limits.max_processing_seconds, 0.01, 600
        ),
        max_avif_pixels=_int(
            env, "IMAGE_SERVICE_MAX_AVIF_PIXELS", Limits.max_avif_pixels, 1, 1 << 30
        ),
        avif_effort=_int(env, "IMAGE_SERVICE_AVIF_EFFORT", Limits.avif_effort, 0, 9),
        body_timeout_seconds=_float(
            env, "IMAGE_SERVICE_BODY_TIMEOUT_SECONDS", Limits.body_timeout_seconds, 0.1, 3600
        ),
        max_metadata_bytes=_int(
            env, "IMAGE_SERVICE_MAX_METADATA_BYTES", Limits.max_metadata_bytes, 0, 1 << 30
        ),
        max_header_bytes=_int(
            env, "IMAGE_SERVICE_MAX_HEADER_BYTES", Limits.max_header_bytes, 1024, 1 << 24
        ),
        max_headers=_int(env, "IMAGE_SERVICE_MAX_HEADERS", Limits.max_headers, 8, 10_000),
    )
    log_level = env.get("IMAGE_SERVICE_LOG_LEVEL", "info").lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"IMAGE_SERVICE_LOG_LEVEL={log_level!r} is not debug|info|warning|error")
    return Settings(
        host=env.get("IMAGE_SERVICE_HOST", "127.0.0.1") or "127.0.0.1",
        port=_int(env, "IMAGE_SERVICE_PORT", 8080, 0, 65_535),
        track=track,
        version=version,
        environment=environment,
        storage=env.get("IMAGE_SERVICE_STORAGE") or Settings.storage,
        s3_endpoint=env.get("IMAGE_SERVICE_S3_ENDPOINT") or None,
        tenants_file=env.get("IMAGE_SERVICE_TENANTS_FILE") or None,
        demo_key=env.get("IMAGE_SERVICE_DEMO_KEY") or None,
        workers=workers,
        queue_size=_int(env, "IMAGE_SERVICE_QUEUE_SIZE", 4 * workers, 0, 100_000),
        background=_background(env.get("IMAGE_SERVICE_BACKGROUND", "ffffff")),
        drain_seconds=_float(env, "IMAGE_SERVICE_DRAIN_SECONDS", 0.0, 0.0, 300.0),
        grace_seconds=_float(env, "IMAGE_SERVICE_GRACE_SECONDS", 25.0, 0.0, 3600.0),
        log_level=log_level,
        limits=limits,
        faults=faults,
    )
