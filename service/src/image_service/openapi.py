"""The OpenAPI 3.1 description served at /openapi.json."""

from __future__ import annotations

from typing import Any

from image_contracts.renditions import FITS, GRAVITIES

from image_service.options import FORMATS


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


TENANT = {
    "name": "tenant",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,63}$"},
}
IMAGE_ID = {
    "name": "image_id",
    "in": "path",
    "required": True,
    "description": "sha256 of the original bytes",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}
COMMON_ERRORS = {
    "404": _error("unknown tenant or image"),
    "400": _error("malformed request, also from the HTTP parser"),
    "405": _error("method not allowed (Allow lists the route's methods)"),
    "431": _error("too many or too large request headers"),
    "429": _error("tenant rate limit exceeded (Retry-After)"),
    "503": _error("overloaded or storage unavailable (Retry-After)"),
}


def spec(max_dimension: int) -> dict[str, Any]:
    size = {"type": "integer", "minimum": 1, "maximum": max_dimension}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "image-service",
            "version": "1",
            "description": "Multitenant image renditions. See service/README.md.",
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                },
                "Upload": {
                    "type": "object",
                    "required": ["id", "width", "height", "format", "bytes"],
                    "properties": {
                        "id": {"type": "string"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                        "format": {"type": "string"},
                        "bytes": {"type": "integer"},
                        "frames": {"type": "integer"},
                    },
                },
            },
        },
        "paths": {
            "/v1/{tenant}/images": {
                "post": {
                    "summary": "Upload an image (raw body); idempotent by content",
                    "security": [{"apiKey": []}],
                    "parameters": [TENANT],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {"schema": {}},
                            "image/*": {"schema": {}},
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "stored (or already stored)",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Upload"}
                                }
                            },
                        },
                        "400": _error("empty body"),
                        "401": _error("missing or wrong API key"),
                        "408": _error("the body did not arrive within the body deadline"),
                        "413": _error("upload or storage quota exceeded"),
                        "415": _error("not an allowed image format"),
                        "422": _error("corrupt image; too many pixels, frames or metadata bytes"),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/v1/{tenant}/images/{image_id}": {
                "get": {
                    "summary": "A rendition; computed once, then served from storage",
                    "parameters": [
                        TENANT,
                        IMAGE_ID,
                        _query("w", "width in CSS px (over the maximum: 422)", size),
                        _query("h", "height in CSS px (over the maximum: 422)", size),
                        _query("fit", "default inside", {"type": "string", "enum": list(FITS)}),
                        _query(
                            "gravity", "default center", {"type": "string", "enum": list(GRAVITIES)}
                        ),
                        _query(
                            "format",
                            "default: the original's; auto negotiates from Accept",
                            {"type": "string", "enum": list(FORMATS)},
                        ),
                        _query(
                            "q",
                            "quality, default 80",
                            {"type": "integer", "minimum": 1, "maximum": 100},
                        ),
                        _query(
                            "dpr",
                            "device pixel ratio 1..4",
                            {"type": "number", "minimum": 1, "maximum": 4},
                        ),
                        _query(
                            "sig", "HMAC-SHA256 signature of the canonical URL", {"type": "string"}
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "the rendition",
                            "content": {"image/*": {"schema": {}}},
                        },
                        "304": {"description": "If-None-Match matched the ETag"},
                        "400": _error("invalid, unknown or duplicate option"),
                        "403": _error("missing or invalid signature"),
                        "422": _error(
                            "output too large (AVIF: too many pixels) or processing timeout"
                        ),
                        **COMMON_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Delete the original and every rendition",
                    "security": [{"apiKey": []}],
                    "parameters": [TENANT, IMAGE_ID],
                    "responses": {
                        "204": {"description": "deleted"},
                        "401": _error("missing or wrong API key"),
                        **COMMON_ERRORS,
                    },
                },
            },
            "/healthz": {
                "get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "readiness: storage reachable and not draining",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text format"}},
                }
            },
        },
    }
