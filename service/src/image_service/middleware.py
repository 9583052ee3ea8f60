"""ASGI middleware: request ids, metrics, the access log, header limits and safe defaults."""

from __future__ import annotations

import logging
import random
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from image_service.config import Limits
from image_service.errors import DomainError
from image_service.fastpath import serve_stored
from image_service.http_errors import error_response
from image_service.service import Service

access_log = logging.getLogger("image_service.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
METHODS = frozenset({"GET", "HEAD", "POST", "DELETE"})


def header_refusal(headers: list[tuple[bytes, bytes]], limits: Limits) -> DomainError | None:
    """uvicorn with httptools bounds neither header count nor size; the service does (431)."""
    if len(headers) > limits.max_headers:
        return DomainError("headers_too_large", f"more than {limits.max_headers} request headers")
    size = 4 * len(headers)  # ": " and CRLF
    for name, value in headers:
        size += len(name) + len(value)
    if size > limits.max_header_bytes:
        return DomainError(
            "headers_too_large", f"request headers exceed {limits.max_header_bytes} bytes"
        )
    return None


NOSNIFF = (b"x-content-type-options", b"nosniff")


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-Id when well formed, else a fresh one."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID.fullmatch(text):
                return text
            break
    # Request ids correlate log lines; they need to be unique, not unguessable.
    return f"{random.getrandbits(128):032x}"


class ObservabilityMiddleware:
    """Request id, in-flight gauge, request metrics, one JSON access line, nosniff on all.

    It wraps Starlette's whole stack (create_app), error middleware included, so a stored hit
    answered by fastpath.py skips every Starlette layer, and a 500 also carries the request id.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        svc = self.service
        http = svc.metrics.http
        started = time.perf_counter()
        rid = request_id(scope["headers"])
        extra = ((b"x-request-id", rid.encode()), NOSNIFF)
        status = 500
        sent = 0

        async def wrapped_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        http.inflight += 1
        try:
            refusal = header_refusal(scope["headers"], svc.settings.limits)
            if refusal is not None:
                await error_response(refusal)(scope, receive, wrapped_send)
                return
            if not (svc.fast_reads and await serve_stored(svc, scope, wrapped_send)):
                await self.app(scope, receive, wrapped_send)
        finally:
            http.inflight -= 1
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            tenant = scope.get("state", {}).get("tenant", "unknown")
            method = scope["method"] if scope["method"] in METHODS else "other"
            http.record(tenant, route, method, str(status), elapsed, sent)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "request_id": rid,
                        "tenant": tenant,
                        "route": route,
                        "method": method,
                        "code": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "bytes": sent,
                    },
                )
