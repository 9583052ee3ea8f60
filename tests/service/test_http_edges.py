"""HTTP edges a client sees: method lists, redirects, sniffing, option bounds, parser refusals."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from service_testkit import BETA_KEY, App, Images, LiveServer


def test_405_lists_every_method_of_the_route(app: App, images: Images) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.put(f"/v1/beta/images/{iid}", content=b"x")
    assert reply.status_code == 405
    allowed = {m.strip() for m in reply.headers["allow"].split(",")}
    assert {"GET", "HEAD", "DELETE"} <= allowed
    assert reply.json()["error"] == "method_not_allowed"
    # What Allow promises really works.
    assert (
        app.client.delete(
            f"/v1/beta/images/{iid}", headers={"Authorization": f"Bearer {BETA_KEY}"}
        ).status_code
        == 204
    )


def test_trailing_slash_redirect_ignores_the_host_header(app: App) -> None:
    reply = app.client.get("/healthz/", headers={"Host": "evil.example"}, follow_redirects=False)
    location = reply.headers.get("location", "")
    assert "evil.example" not in location
    if 300 <= reply.status_code < 400:
        assert location.startswith("/healthz")
    else:
        assert reply.status_code == 404
        assert reply.json()["error"] == "not_found"


def test_every_reply_forbids_content_sniffing(app: App, images: Images) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    for path in (f"/v1/beta/images/{iid}?w=10", "/healthz", "/nope", "/metrics"):
        assert app.client.get(path).headers.get("x-content-type-options") == "nosniff", path


@pytest.mark.parametrize("query", ["w=9000", "w=1000000", "h=99999999", "w=123456789012"])
def test_too_large_sizes_get_one_answer(app: App, images: Images, query: str) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.get(f"/v1/beta/images/{iid}?{query}")
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "output_too_large"


def test_openapi_states_the_size_maximum(app: App, images: Images) -> None:
    spec = app.client.get("/openapi.json").json()
    params = {
        p["name"]: p["schema"]
        for p in spec["paths"]["/v1/{tenant}/images/{image_id}"]["get"]["parameters"]
    }
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    for name in ("w", "h"):
        maximum = params[name]["maximum"]
        # The published maximum is what the service really accepts, and one more is refused.
        assert app.client.get(f"/v1/beta/images/{iid}?{name}={maximum}&fit=inside").status_code in (
            200,
            422,
        )
        over = app.client.get(f"/v1/beta/images/{iid}?{name}={maximum + 1}")
        assert over.status_code == 422
        assert over.json()["error"] == "output_too_large"


def raw_exchange(url: str, payload: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(payload)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "payload",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_parser_refusals_are_json(live_server: Callable[..., LiveServer], payload: bytes) -> None:
    server = live_server()
    reply = raw_exchange(server.url, payload)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply
    assert b"application/json" in head.lower()
    assert b"nosniff" in head.lower()
    import json

    document = json.loads(body)
    assert set(document) == {"error", "detail"}
    assert document["error"] == "bad_request"


def test_an_unexpected_error_is_a_json_500_with_request_id_and_nosniff(
    make_app: Callable[..., App], images: Images
) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("a bug in the render code")

    app = make_app(render=broken)
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.get(f"/v1/beta/images/{iid}?w=30", headers={"X-Request-Id": "bug-1"})
    assert reply.status_code == 500
    assert reply.json()["error"] == "internal_error"
    assert reply.headers["x-request-id"] == "bug-1"
    assert reply.headers["x-content-type-options"] == "nosniff"
    counted = app.service.metrics.registry.get_sample_value(
        "image_service_http_requests_total",
        {
            "track": "canary",
            "version": "abc123",
            "tenant": "beta",
            "route": "/v1/{tenant}/images/{image_id}",
            "method": "GET",
            "code": "500",
        },
    )
    assert counted == 1.0
