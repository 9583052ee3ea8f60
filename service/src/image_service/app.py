"""The HTTP layer: routes, auth, signatures, caching headers; the imperative shell."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import pyvips
from image_contracts.tenants import is_tenant_id
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from image_service import faults
from image_service.caching import IMMUTABLE, etag_for, none_match, rendition_digest
from image_service.config import Limits, Settings
from image_service.errors import ApiError
from image_service.formats import MIME_TYPES, sniff
from image_service.metrics import Metrics
from image_service.negotiate import choose_format
from image_service.openapi import spec
from image_service.options import RenditionOptions, parse_options, split_query
from image_service.ratelimit import RateLimiter
from image_service.signing import verify
from image_service.storage import (
    Storage,
    StorageError,
    original_key,
    originals_prefix,
    rendition_key,
    renditions_prefix,
)
from image_service.tenants import Tenant, bearer_key, key_matches
from image_service.transform import RENDER_VERSION, ImageInfo, Rendered, probe, render, vips_version
from image_service.workers import WorkerPool

log = logging.getLogger("image_service")
access_log = logging.getLogger("image_service.access")
IMAGE_ID = re.compile(r"[0-9a-f]{64}")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
T = TypeVar("T")


@dataclass
class Service:
    """Everything a request needs; one per app (tests build several)."""

    settings: Settings
    tenants: dict[str, Tenant]
    storage: Storage
    metrics: Metrics
    pool: WorkerPool
    limiter: RateLimiter = field(default_factory=RateLimiter)
    draw: Callable[[], float] = random.random
    draining: bool = False
    encoder_version: str = field(default_factory=lambda: f"{RENDER_VERSION}-vips{vips_version()}")
    stored_bytes: dict[str, int] = field(default_factory=dict)
    uploads_in_flight: int = 0  # touched only on the event loop
    inflight_renders: dict[str, asyncio.Future[Rendered]] = field(default_factory=dict)

    async def io(self, operation: str, fn: Callable[..., T], *args: Any, read: bool = False) -> T:
        """Run a blocking storage call in a thread; count and translate its failures.

        Reads from a backend that declares `inline_reads` (a local directory: a stat and a
        page-cache read cost less than the thread hand-off) run directly on the event loop.
        """
        try:
            if read and getattr(self.storage, "inline_reads", False):
                return fn(*args)
            return await anyio.to_thread.run_sync(fn, *args)
        except StorageError as exc:
            raise self.storage_failure(operation, exc) from exc

    def storage_failure(self, operation: str, exc: StorageError) -> ApiError:
        self.metrics.child(self.metrics.storage_errors, self.storage.backend, operation).inc()
        log.error("storage failure", exc_info=exc)
        return ApiError(
            503,
            "storage_unavailable",
            "storage is unavailable; retry shortly",
            {"Retry-After": "1"},
        )


def _service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def _json_error(exc: ApiError) -> JSONResponse:
    headers = {"Cache-Control": "no-store", **exc.headers}
    return JSONResponse({"error": exc.error, "detail": exc.detail}, exc.status, headers)


async def _begin(request: Request, svc: Service) -> Tenant:
    """Resolve the tenant named in the path, label the request, apply injected faults."""
    tenant_id = request.path_params["tenant"]
    tenant = svc.tenants.get(tenant_id) if is_tenant_id(tenant_id) else None
    if tenant is None:
        raise ApiError(404, "unknown_tenant", "no such tenant")
    request.state.tenant = tenant.id
    decision = faults.decide(svc.settings.faults, tenant.id, svc.draw())
    if decision.delay_seconds:
        await asyncio.sleep(decision.delay_seconds)
    if decision.error:
        raise ApiError(500, "injected_fault", "fault injection is enabled on this process")
    return tenant


def _rate_limit(svc: Service, tenant: Tenant) -> None:
    wait = svc.limiter.check(tenant.id, tenant.requests_per_second, time.monotonic())
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"tenant {tenant.id} is limited to {tenant.requests_per_second:g} requests/s",
            {"Retry-After": str(wait)},
        )


def _authenticate(request: Request, tenant: Tenant) -> None:
    key = bearer_key(request.headers.get("authorization"))
    if key is None or not key_matches(tenant, key):
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
            {"WWW-Authenticate": 'Bearer realm="image-service"'},
        )


def _image_id(request: Request) -> str:
    image_id: str = request.path_params["image_id"]
    if not IMAGE_ID.fullmatch(image_id):
        raise ApiError(404, "not_found", "image ids are 64 lowercase hex characters")
    return image_id


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, "upload_too_large", f"uploads are limited to {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid_content_length", "Content-Length must be an integer")
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
    tenant = await _begin(request, svc)
    _authenticate(request, tenant)
    _rate_limit(svc, tenant)
    # Bodies are held in memory until stored, so the number being received at once is bounded
    # like the worker queue: memory stays under (workers + queue) x the upload limit.
    if svc.uploads_in_flight >= svc.pool.workers + svc.pool.queue_size:
        raise ApiError(
            503, "overloaded", "too many uploads in progress; retry shortly", {"Retry-After": "1"}
        )
    svc.uploads_in_flight += 1
    try:
        return await _store_upload(request, svc, tenant)
    finally:
        svc.uploads_in_flight -= 1


async def _store_upload(request: Request, svc: Service, tenant: Tenant) -> Response:
    limit = min(tenant.max_upload_bytes, svc.settings.limits.max_upload_bytes)
    body = await _read_body(request, limit)
    svc.metrics.child(svc.metrics.bytes_received, tenant.id).inc(len(body))
    info: ImageInfo = await svc.pool.run(probe, body, tenant.allowed_formats, svc.settings.limits)
    image_id = hashlib.sha256(body).hexdigest()
    key = original_key(tenant.id, image_id)
    if not await svc.io("head", svc.storage.exists, key):
        if tenant.id not in svc.stored_bytes:
            svc.stored_bytes[tenant.id] = await svc.io(
                "list", svc.storage.usage, originals_prefix(tenant.id)
            )
        if svc.stored_bytes[tenant.id] + len(body) > tenant.max_stored_bytes:
            raise ApiError(
                413,
                "storage_quota_exceeded",
                f"tenant {tenant.id} may store {tenant.max_stored_bytes} bytes of originals",
            )
        await svc.io("put", svc.storage.put, key, body, MIME_TYPES[info.format])
        svc.stored_bytes[tenant.id] += len(body)
    reply = {
        "id": image_id,
        "width": info.width,
        "height": info.height,
        "format": info.format,
        "bytes": len(body),
        "frames": info.frames,
    }
    return JSONResponse(reply, 201, {"Location": f"/v1/{tenant.id}/images/{image_id}"})


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
    storage: Storage,
    source_key: str,
    options: RenditionOptions,
    resolved: str | None,
    limits: Limits,
    background: tuple[int, int, int],
) -> tuple[Rendered, str, float] | None:
    """Worker-thread job: read the original, render it; None when the original is gone."""
    original = storage.get(source_key)
    if original is None:
        return None
    out_format = resolved or sniff(original) or "jpeg"
    started = time.perf_counter()
    try:
        rendered = render(original, options, out_format, limits, background)
    except pyvips.Error as exc:
        # Uploads are validated, so this is a gap in validation, not the client's fault; it
        # is logged as an error, and the client still gets a 4xx rather than a 5xx.
        log.error("stored original failed to render", exc_info=exc)
        raise ApiError(
            422, "unrenderable", "this image cannot be rendered with these options"
        ) from exc
    return rendered, out_format, time.perf_counter() - started


def _lookup(storage: Storage, source_key: str, key: str | None) -> tuple[bool, bytes | None]:
    """One storage round trip for a read: does the original exist, and the stored rendition."""
    if not storage.exists(source_key):
        return False, None
    return True, None if key is None else storage.get(key)


async def get_image(request: Request) -> Response:
    svc = _service(request)
    tenant = await _begin(request, svc)
    image_id = _image_id(request)
    limits = svc.settings.limits
    pairs = split_query(request.scope["query_string"].decode("latin-1"))
    options, signature = parse_options(pairs, limits.max_output_dimension)
    if signature is not None or not tenant.allow_unsigned_reads:
        if signature is None:
            raise ApiError(403, "signature_required", "this tenant requires signed URLs (sig=)")
        if not verify(tenant.signing_secrets, tenant.id, image_id, options, signature):
            raise ApiError(403, "invalid_signature", "the signature does not match this URL")
    _rate_limit(svc, tenant)
    negotiated = options.format == "auto"
    resolved = choose_format(request.headers.get("accept")) if negotiated else options.format
    digest = rendition_digest(
        image_id, options, resolved or "original", svc.encoder_version, svc.settings.background
    )
    etag = etag_for(digest)
    headers = {"Cache-Control": IMMUTABLE, "ETag": etag}
    if negotiated:
        headers["Vary"] = "Accept"
    source_key = original_key(tenant.id, image_id)
    key = rendition_key(tenant.id, image_id, digest, "img")
    revalidating = none_match(request.headers.get("if-none-match"), etag)
    # The original is checked on every read, so a deleted image stops being served at once.
    found, cached = await svc.io(
        "get", _lookup, svc.storage, source_key, None if revalidating else key, read=True
    )
    if not found:
        raise ApiError(404, "not_found", "no such image")
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
                    _fetch_and_render,
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
                raise ApiError(404, "not_found", "no such image")
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
    _rate_limit(svc, tenant)
    image_id = _image_id(request)
    key = original_key(tenant.id, image_id)
    original = await svc.io("get", svc.storage.get, key)
    if original is None:
        raise ApiError(404, "not_found", "no such image")
    # Renditions first, then the original, then renditions again: a render racing with the
    # delete cannot leave a servable rendition (reads check the original first anyway).
    await svc.io("delete", svc.storage.delete_prefix, renditions_prefix(tenant.id, image_id))
    await svc.io("delete", svc.storage.delete, key)
    await svc.io("delete", svc.storage.delete_prefix, renditions_prefix(tenant.id, image_id))
    if tenant.id in svc.stored_bytes:
        svc.stored_bytes[tenant.id] = max(0, svc.stored_bytes[tenant.id] - len(original))
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = _service(request)
    if svc.draining:
        return JSONResponse({"status": "draining"}, 503)
    try:
        await svc.io("check", svc.storage.check)
    except ApiError:
        return JSONResponse({"status": "storage unavailable"}, 503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(_service(request).metrics.registry),
        200,
        {"Content-Type": CONTENT_TYPE_LATEST},
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(spec())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _json_error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _json_error(ApiError(exc.status_code, code, str(exc.detail), dict(exc.headers or {})))


async def _disconnect(request: Request, exc: Exception) -> Response:
    # The client went away mid-body: nothing was stored, and nobody reads this reply.
    return _json_error(ApiError(400, "client_disconnected", "the request body was incomplete"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return _json_error(ApiError(500, "internal_error", "an unexpected error occurred"))


def _header_refusal(headers: list[tuple[bytes, bytes]], limits: Limits) -> ApiError | None:
    """uvicorn with httptools bounds neither header count nor size; the service does (431)."""
    if len(headers) > limits.max_headers:
        detail = f"more than {limits.max_headers} request headers"
        return ApiError(431, "headers_too_large", detail, {"Connection": "close"})
    size = sum(len(k) + len(v) + 4 for k, v in headers)
    if size > limits.max_header_bytes:
        detail = f"request headers exceed {limits.max_header_bytes} bytes"
        return ApiError(431, "headers_too_large", detail, {"Connection": "close"})
    return None


class ObservabilityMiddleware:
    """Request id, in-flight gauge, request metrics and one JSON access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        svc: Service = scope["app"].state.service
        m = svc.metrics
        started = time.perf_counter()
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        text = incoming.decode("latin-1")
        request_id = text if REQUEST_ID.fullmatch(text) else os.urandom(16).hex()
        status = 500
        sent = 0

        async def wrapped_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        m.child(m.inflight).inc()
        try:
            refusal = _header_refusal(scope["headers"], svc.settings.limits)
            if refusal is not None:
                await _json_error(refusal)(scope, receive, wrapped_send)
                return
            await self.app(scope, receive, wrapped_send)
        finally:
            m.child(m.inflight).dec()
            elapsed = time.perf_counter() - started
            route_obj = scope.get("route")
            route = getattr(route_obj, "path", "unmatched")
            tenant = scope.get("state", {}).get("tenant", "unknown")
            method = (
                scope["method"] if scope["method"] in {"GET", "HEAD", "POST", "DELETE"} else "other"
            )
            m.child(m.requests, tenant, route, method, str(status)).inc()
            m.child(m.request_duration, tenant, route, method).observe(elapsed)
            if tenant != "unknown":
                m.child(m.bytes_sent, tenant).inc(sent)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "tenant": tenant,
                        "route": route,
                        "method": method,
                        "code": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "bytes": sent,
                    },
                )


def create_app(service: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await anyio.to_thread.run_sync(service.pool.shutdown)

    routes = [
        Route("/v1/{tenant}/images", upload, methods=["POST"]),
        Route("/v1/{tenant}/images/{image_id}", get_image, methods=["GET"]),
        Route("/v1/{tenant}/images/{image_id}", delete_image, methods=["DELETE"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(ObservabilityMiddleware)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _disconnect,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.service = service
    service.metrics.workers.labels(**service.metrics.base).set(service.pool.workers)
    return app
