"""uvicorn's HTTP protocol, with the parser's own refusals in the documented JSON shape."""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def refusal_bytes(detail: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A complete HTTP/1.1 400 reply: JSON error body, no sniffing, connection closed."""
    body = json.dumps({"error": "bad_request", "detail": detail}).encode()
    lines = [b"HTTP/1.1 400 Bad Request"]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/json",
        b"x-content-type-options: nosniff",
        b"cache-control: no-store",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class JsonRefusalProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        self.transport.write(refusal_bytes(msg, list(self.server_state.default_headers)))
        self.transport.close()
