"""Composition root: settings -> storage, tenants, metrics, worker pool -> Service."""

from __future__ import annotations

from collections.abc import Mapping

from image_service import transform
from image_service.config import Settings
from image_service.errors import ConfigError
from image_service.local_storage import LocalStorage
from image_service.metrics import Metrics
from image_service.service import ProbeFn, RenderFn, Service
from image_service.storage import Storage
from image_service.tenants import Tenant, demo_tenant, load_tenants_file
from image_service.workers import UploadGate, WorkerPool


def build_storage(settings: Settings) -> Storage:
    if settings.storage.startswith("s3://"):
        # Imported here so local runs never pay for boto3's import.
        from image_service.s3_storage import S3Storage

        try:
            return S3Storage(settings.storage, settings.s3_endpoint)
        except ValueError as exc:
            raise ConfigError(f"IMAGE_SERVICE_STORAGE: {exc}") from None
    return LocalStorage(settings.storage)


def build_tenants(
    settings: Settings, env: Mapping[str, str]
) -> tuple[dict[str, Tenant], str | None]:
    """The configured tenants, or the demo tenant and its plain key when no file is set."""
    if settings.tenants_file:
        return load_tenants_file(settings.tenants_file, env, settings.limits.max_upload_bytes), None
    tenant, key = demo_tenant(settings.demo_key, settings.limits.max_upload_bytes)
    return {tenant.id: tenant}, key


def build_service(
    settings: Settings,
    tenants: dict[str, Tenant],
    storage: Storage | None = None,
    render: RenderFn = transform.render,
    probe: ProbeFn = transform.probe,
) -> Service:
    metrics = Metrics(settings.track, settings.version)
    gauge = metrics.queue_depth.labels(**metrics.base)
    pool = WorkerPool(
        settings.workers,
        settings.queue_size,
        on_change=gauge.set,
        on_start=lambda tenant, seconds: metrics.child(metrics.queue_seconds, tenant).observe(
            seconds
        ),
    )
    return Service(
        settings=settings,
        tenants=tenants,
        storage=storage if storage is not None else build_storage(settings),
        metrics=metrics,
        pool=pool,
        uploads=UploadGate(settings.workers + settings.queue_size),
        render=render,
        probe=probe,
    )
