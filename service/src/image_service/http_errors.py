"""The one table from domain error codes to HTTP statuses, and the JSON reply they become."""

from __future__ import annotations

from starlette.responses import JSONResponse

from image_service.errors import DomainError

# Every code the service can answer with. A code missing here is a bug (it becomes a 500).
STATUS: dict[str, int] = {
    # 400: the request itself is malformed
    "bad_request": 400,
    "empty_body": 400,
    "invalid_option": 400,
    "duplicate_option": 400,
    "unknown_option": 400,
    "invalid_content_length": 400,
    "client_disconnected": 400,
    # 401/403/404/405: who and what
    "unauthorized": 401,
    "signature_required": 403,
    "invalid_signature": 403,
    "unknown_tenant": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    # 408/413/415/422/429/431: limits and content
    "body_timeout": 408,
    "upload_too_large": 413,
    "storage_quota_exceeded": 413,
    "unsupported_format": 415,
    "format_not_allowed": 415,
    "invalid_image": 422,
    "metadata_too_large": 422,
    "too_many_frames": 422,
    "image_too_large": 422,
    "output_too_large": 422,
    "avif_too_large": 422,
    "processing_timeout": 422,
    "unrenderable": 422,
    "rate_limited": 429,
    "headers_too_large": 431,
    # 5xx: the service's side
    "injected_fault": 500,
    "internal_error": 500,
    "overloaded": 503,
    "tenant_overloaded": 503,
    "storage_unavailable": 503,
}
# Headers that belong to a code whatever raised it.
EXTRA_HEADERS: dict[str, dict[str, str]] = {
    "unauthorized": {"WWW-Authenticate": 'Bearer realm="image-service"'},
    "body_timeout": {"Connection": "close"},
    "headers_too_large": {"Connection": "close"},
    "bad_request": {"Connection": "close"},
}


def status_of(code: str) -> int:
    return STATUS.get(code, 500)


def headers_of(error: DomainError) -> dict[str, str]:
    headers = {"Cache-Control": "no-store", **EXTRA_HEADERS.get(error.code, {})}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return headers


def body_of(error: DomainError) -> dict[str, str]:
    return {
        "error": error.code if error.code in STATUS else "internal_error",
        "detail": error.detail,
    }


def error_response(error: DomainError, extra: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body_of(error), status_of(error.code), {**headers_of(error), **(extra or {})}
    )
