"""The HTTP layer: routes, auth, signatures and caching headers. Handlers only; the state lives
in service.py, the middleware in middleware.py, the error table in http_errors.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pyvips
from image_contracts.tenants import is_tenant_id
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from image_service import faults
from image_service.caching import cache_control, none_match
from image_service.config import Limits
from image_service.errors import DomainError
from image_service.formats import MIME_TYPES, sniff
from image_service.http_errors import error_response
from image_service.memory import release_after
from image_service.middleware import ObservabilityMiddleware
from image_service.openapi import spec
from image_service.options import RenditionOptions
from image_service.reads import IMAGE_ID, lookup, plan_read, rate_limit
from image_service.service import ProbeFn, RenderFn, Service
from image_service.storage import (
    Storage,
    StorageError,
    original_key,
    rendition_key,
    renditions_prefix,
)
from image_service.tenants import Tenant, bearer_key, key_matches
from image_service.transform import ImageInfo, Original, Rendered, original_head

log = logging.getLogger("image_service")

__all__ = ["Service", "create_app"]


def _service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


async def _begin(request: Request, svc: Service) -> Tenant:
    """Resolve the tenant named in the path, label the request, apply injected faults."""
    tenant_id = request.path_params["tenant"]
    tenant = svc.tenants.get(tenant_id) if is_tenant_id(tenant_id) else None
    if tenant is None:
        raise DomainError("unknown_tenant", "no such tenant")
    request.state.tenant = tenant.id
    decision = faults.decide(svc.settings.faults, tenant.id, svc.draw())
    if decision.delay_seconds:
        await asyncio.sleep(decision.delay_seconds)
    if decision.error:
        raise DomainError("injected_fault", "fault injection is enabled on this process")
    return tenant


def _authenticate(request: Request, tenant: Tenant) -> None:
    key = bearer_key(request.headers.get("authorization"))
    if key is None or not key_matches(tenant, key):
        raise DomainError(
            "unauthorized", "a valid API key is required: Authorization: Bearer <key>"
        )


def _image_id(request: Request) -> str:
    image_id: str = request.path_params["image_id"]
    if not IMAGE_ID.fullmatch(image_id):
        raise DomainError("not_found", "image ids are 64 lowercase hex characters")
    return image_id


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = DomainError("upload_too_large", f"uploads are limited to {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise DomainError("invalid_content_length", "Content-Length must be an integer")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def upload(request: Request) -> Response:
    svc = _service(request)
    request.state.body_read = False
    try:
        tenant = await _begin(request, svc)
        _authenticate(request, tenant)
        rate_limit(svc, tenant)
        # Bodies are held in memory until stored, so the number being received at once is
        # bounded, and shared by tenant: one tenant's stalled connections hold only its own
        # slots, and the body deadline frees them.
        svc.uploads.enter(tenant.id)
        try:
            return await _store_upload(request, svc, tenant)
        finally:
            svc.uploads.leave(tenant.id)
    except DomainError as exc:
        if request.state.body_read:
            raise
        # Refused before the body was read: close, so the connection is not held open for a
        # body nobody will read.
        return error_response(exc, {"Connection": "close"})


async def _store_upload(request: Request, svc: Service, tenant: Tenant) -> Response:
    limits = svc.settings.limits
    try:
        async with asyncio.timeout(limits.body_timeout_seconds):
            body = await _read_body(request, min(tenant.max_upload_bytes, limits.max_upload_bytes))
        request.state.body_read = True
    except TimeoutError:
        raise DomainError(
            "body_timeout", f"the upload body did not arrive within {limits.body_timeout_seconds} s"
        ) from None
    svc.metrics.child(svc.metrics.bytes_received, tenant.id).inc(len(body))
    info: ImageInfo = await svc.pool.run(
        tenant.id, _probe_and_release, svc.probe, body, tenant.allowed_formats, limits
    )
    image_id = hashlib.sha256(body).hexdigest()
    await _store_original(svc, tenant, image_id, body, MIME_TYPES[info.format])
    reply = {
        "id": image_id,
        "width": info.width,
        "height": info.height,
        "format": info.format,
        "bytes": len(body),
        "frames": info.frames,
    }
    return JSONResponse(reply, 201, {"Location": f"/v1/{tenant.id}/images/{image_id}"})


async def _store_original(
    svc: Service, tenant: Tenant, image_id: str, body: bytes, content_type: str
) -> None:
    """Store once, counted once: one writer per image, bytes reserved before the write."""
    key = original_key(tenant.id, image_id)
    async with svc.quota.image(tenant.id, image_id):
        if await svc.io("head", svc.storage.exists, key):
            return
        await svc.count_stored(tenant.id)
        if not svc.quota.reserve(tenant.id, len(body), tenant.max_stored_bytes):
            raise DomainError(
                "storage_quota_exceeded",
                f"tenant {tenant.id} may store {tenant.max_stored_bytes} bytes of originals",
            )
        try:
            await svc.io("put", svc.storage.put, key, body, content_type)
        except BaseException:
            svc.quota.release(tenant.id, len(body))
            raise
        svc.quota.commit(tenant.id, len(body))


async def _render_once(
    svc: Service, digest: str, make: Callable[[], Awaitable[Rendered]]
) -> Rendered:
    """Concurrent misses for the same rendition share one transform.

    The transform runs as its own task, so a client that disconnects cancels only its wait:
    the others still get the result, and the rendition is stored either way.
    """
    task = svc.inflight_renders.get(digest)
    if task is None:
        task = asyncio.ensure_future(make())
        svc.inflight_renders[digest] = task

        def finished(done: asyncio.Future[Rendered]) -> None:
            svc.inflight_renders.pop(digest, None)
            if not done.cancelled():
                done.exception()  # retrieved here even when every waiter has gone

        task.add_done_callback(finished)
    return await asyncio.shield(task)


def _fetch_and_render(
    render: RenderFn,
    storage: Storage,
    source_key: str,
    options: RenditionOptions,
    resolved: str | None,
    limits: Limits,
    background: tuple[int, int, int],
) -> tuple[Rendered, str, float] | None:
    """Worker-thread job: read the original, render it; None when the original is gone.

    A local original is rendered from its file (ADR 171): libvips reads it in blocks, so two
    renders of a large JPEG do not each hold a whole copy of it at the peak.
    """
    original: Original | None = storage.local_path(source_key) or storage.get(source_key)
    if original is None:
        return None
    started = time.perf_counter()
    size = 0  # of the original, for release_after
    try:
        out_format = resolved or sniff(original_head(original)) or "jpeg"
        size = len(original) if isinstance(original, bytes) else original.stat().st_size
        rendered = render(original, options, out_format, limits, background)
    except (pyvips.Error, OSError) as exc:
        if not storage.exists(source_key):
            return None  # deleted while it rendered from its file: gone, not broken
        if isinstance(exc, OSError):
            raise StorageError("get", str(exc)) from exc
        # Uploads are validated, so this is a gap in validation, not the client's fault; it
        # is logged as an error, and the client still gets a 4xx rather than a 5xx.
        log.error("stored original failed to render", exc_info=exc)
        raise DomainError(
            "unrenderable", "this image cannot be rendered with these options"
        ) from exc
    finally:
        release_after(size)
    return rendered, out_format, time.perf_counter() - started


def _probe_and_release(
    probe: ProbeFn, body: bytes, allowed: frozenset[str], limits: Limits
) -> ImageInfo:
    """Worker-thread job: validate an upload, then return a large decode's heap to the system."""
    try:
        return probe(body, allowed, limits)
    finally:
        release_after(len(body))


async def get_image(request: Request) -> Response:
    svc = _service(request)
    tenant = await _begin(request, svc)
    image_id = _image_id(request)
    limits = svc.settings.limits
    query = request.scope["query_string"].decode("latin-1")
    # Only format=auto reads Accept; "auto" can only be spelt literally or percent-encoded.
    accept = request.headers.get("accept") if "auto" in query or "%" in query else None
    plan = plan_read(
        tenant,
        image_id,
        query,
        accept,
        limits.max_output_dimension,
        svc.encoder_version,
        svc.settings.background,
    )
    rate_limit(svc, tenant)
    options, resolved, digest, etag = plan.options, plan.resolved, plan.digest, plan.etag
    headers = {"Cache-Control": cache_control(svc.settings.track), "ETag": etag}
    if plan.negotiated:
        headers["Vary"] = "Accept"
    source_key = original_key(tenant.id, image_id)
    key = rendition_key(tenant.id, image_id, digest, "img")
    revalidating = none_match(request.headers.get("if-none-match"), etag)
    # The original is checked on every read, so a deleted image stops being served at once.
    found, cached = await svc.io(
        "get", lookup, svc.storage, source_key, None if revalidating else key, read=True
    )
    if not found:
        raise DomainError("not_found", "no such image")
    if revalidating:
        return Response(status_code=304, headers=headers)
    result = "hit" if cached is not None else "miss"
    svc.metrics.child(svc.metrics.rendition_cache, tenant.id, result).inc()
    if cached is None:

        async def make() -> Rendered:
            try:
                # The original is read inside the worker, so only running jobs hold one in
                # memory: queued requests cost a few hundred bytes, not an image each.
                outcome = await svc.pool.run(
                    tenant.id,
                    _fetch_and_render,
                    svc.render,
                    svc.storage,
                    source_key,
                    options,
                    resolved,
                    limits,
                    svc.settings.background,
                )
            except StorageError as exc:
                raise svc.storage_failure("get", exc) from exc
            if outcome is None:
                raise DomainError("not_found", "no such image")
            rendered, out_format, seconds = outcome
            svc.metrics.child(svc.metrics.transform_duration, out_format).observe(seconds)
            await svc.io("put", svc.storage.put, key, rendered.data, MIME_TYPES[out_format])
            return rendered

        cached = (await _render_once(svc, digest, make)).data
    media_type = MIME_TYPES.get(sniff(cached) or "", "application/octet-stream")
    return Response(cached, 200, headers, media_type=media_type)


async def delete_image(request: Request) -> Response:
    svc = _service(request)
    tenant = await _begin(request, svc)
    _authenticate(request, tenant)
    rate_limit(svc, tenant)
    image_id = _image_id(request)
    key = original_key(tenant.id, image_id)
    async with svc.quota.image(tenant.id, image_id):
        await svc.count_stored(tenant.id)
        original = await svc.io("get", svc.storage.get, key)
        if original is None:
            raise DomainError("not_found", "no such image")
        # Renditions first, then the original, then renditions again: a render racing with
        # the delete cannot leave a servable rendition (reads check the original first).
        prefix = renditions_prefix(tenant.id, image_id)
        await svc.io("delete", svc.storage.delete_prefix, prefix)
        deleted = await svc.io("delete", svc.storage.delete, key)
        await svc.io("delete", svc.storage.delete_prefix, prefix)
        if deleted:
            svc.quota.freed(tenant.id, len(original))
    return Response(status_code=204)


async def image(request: Request) -> Response:
    """One route, so a wrong method's 405 lists every method it has (GET, HEAD, DELETE)."""
    if request.method == "DELETE":
        return await delete_image(request)
    return await get_image(request)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = _service(request)
    if svc.draining:
        return JSONResponse({"status": "draining"}, 503)
    try:
        await svc.io("check", svc.storage.check)
    except DomainError:
        return JSONResponse({"status": "storage unavailable"}, 503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(_service(request).metrics.registry),
        200,
        {"Content-Type": CONTENT_TYPE_LATEST},
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(spec(_service(request).settings.limits.max_output_dimension))


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return error_response(DomainError(code, str(exc.detail)), dict(exc.headers or {}))


async def _disconnect(request: Request, exc: Exception) -> Response:
    # The client went away mid-body: nothing was stored, and nobody reads this reply.
    return error_response(DomainError("client_disconnected", "the request body was incomplete"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(DomainError("internal_error", "an unexpected error occurred"))


class _ObservedStarlette(Starlette):
    """Starlette with ObservabilityMiddleware outside its error layer rather than inside."""

    def build_middleware_stack(self) -> ASGIApp:
        service: Service = self.state.service
        return ObservabilityMiddleware(super().build_middleware_stack(), service)


def create_app(service: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The quota starts from what storage holds, so a restart never drifts.
        for tenant in service.tenants:
            with contextlib.suppress(DomainError):  # storage down: counted on first write instead
                await service.count_stored(tenant)
        yield
        await anyio.to_thread.run_sync(service.pool.shutdown)

    routes = [
        Route("/v1/{tenant}/images", upload, methods=["POST"]),
        Route("/v1/{tenant}/images/{image_id}", image, methods=["GET", "DELETE"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
    ]
    app = _ObservedStarlette(
        routes=routes,
        exception_handlers={
            DomainError: _refused,
            HTTPException: _http_error,
            ClientDisconnect: _disconnect,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    # Starlette builds slash redirects from the Host header; an API has no use for them.
    app.router.redirect_slashes = False
    app.state.service = service
    service.metrics.workers.labels(**service.metrics.base).set(service.pool.workers)
    return app
