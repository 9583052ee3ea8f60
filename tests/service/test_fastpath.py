"""The lean stored-read path (fastpath.py) answers exactly as the full Starlette path does."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest
from image_service.fastpath import serve_stored
from image_service.options import RenditionOptions
from image_service.signing import signed_url
from service_testkit import ACME_SECRETS, BETA_KEY, App, AppFactory, Images
from starlette.types import Message

REQUEST_ID = "fastpath-test-1"


def _reply(app: App, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {"X-Request-Id": REQUEST_ID, **(headers or {})}
    response: httpx.Response = app.client.get(path, headers=sent)
    return response


def _same(fast: httpx.Response, full: httpx.Response) -> None:
    assert fast.status_code == full.status_code
    assert fast.headers.multi_items() == full.headers.multi_items()
    assert fast.content == full.content


def _hits(app: App, tenant: str) -> float:
    value = app.service.metrics.registry.get_sample_value(
        "image_service_rendition_cache_total",
        {"track": "canary", "version": "abc123", "tenant": tenant, "result": "hit"},
    )
    return value or 0.0


@pytest.fixture
def pair(make_app: AppFactory) -> tuple[App, App]:
    """Two apps over one store: the first with the fast path, the second without."""
    fast, full = make_app(), make_app()
    full.service.fast_reads = False
    return fast, full


def _cases(iid: str, etag: str) -> list[tuple[str, dict[str, str]]]:
    signed = signed_url("", ACME_SECRETS[0], "acme", iid, RenditionOptions(width=30))
    return [
        (f"/v1/beta/images/{iid}?w=30", {}),  # stored hit
        (f"/v1/beta/images/{iid}?w=30", {"If-None-Match": etag}),  # 304
        (f"/v1/beta/images/{iid}?w=30", {"If-None-Match": f'W/{etag}, "x"'}),  # weak 304
        (f"/v1/beta/images/{iid}?w=30", {"If-None-Match": '"other"'}),  # 200, no match
        (f"/v1/beta/images/{iid}?w=30&format=auto", {"Accept": "image/webp"}),  # Vary
        (f"/v1/beta/images/{iid}?w=31", {}),  # miss: rendered by the full path
        (f"/v1/beta/images/{'0' * 64}?w=30", {}),  # no such image
        (f"/v1/beta/images/{'0' * 64}?w=30", {"If-None-Match": "*"}),  # 404 before 304
        (f"/v1/beta/images/{iid[:10]}?w=30", {}),  # malformed id
        (f"/v1/nobody/images/{iid}?w=30", {}),  # unknown tenant
        (f"/v1/beta/images/{iid}?w=abc", {}),  # bad option
        (f"/v1/beta/images/{iid}?w=30&sig=bad", {}),  # bad signature
        (f"/v1/acme/images/{iid}?w=30", {}),  # signature required
        (signed, {}),  # signed, stored on the second pass
    ]


def test_fast_and_full_paths_reply_byte_for_byte_alike(
    pair: tuple[App, App], images: Images
) -> None:
    fast, full = pair
    iid = fast.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    assert fast.upload(images.png).status_code in (200, 201)
    etag = _reply(full, f"/v1/beta/images/{iid}?w=30").headers["etag"]
    for _ in range(2):  # the second pass finds every rendition the first one made
        for path, headers in _cases(iid, etag):
            _same(_reply(fast, path, headers), _reply(full, path, headers))


def test_the_fast_path_counts_hits_like_the_full_path(
    pair: tuple[App, App], images: Images
) -> None:
    fast, full = pair
    iid = fast.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    path = f"/v1/beta/images/{iid}?w=30"
    _reply(full, path)  # render and store
    for app in pair:
        before = _hits(app, "beta")
        assert _reply(app, path).status_code == 200
        assert _reply(app, path, {"If-None-Match": '"zzz"'}).status_code == 200
        assert _hits(app, "beta") == before + 2


def test_rate_limited_reads_are_refused_alike(pair: tuple[App, App], images: Images) -> None:
    fast, full = pair
    iid = fast.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    path = f"/v1/beta/images/{iid}?w=30"
    _reply(full, path)
    for app in pair:
        app.service.tenants["beta"] = replace(app.service.tenants["beta"], requests_per_second=1)
    replies = [[_reply(app, path) for _ in range(3)] for app in pair]
    assert [r.status_code for r in replies[0]] == [200, 429, 429]
    for fast_reply, full_reply in zip(*replies, strict=True):
        assert fast_reply.status_code == full_reply.status_code
        assert fast_reply.headers.multi_items() == full_reply.headers.multi_items()
        assert fast_reply.content == full_reply.content


def test_serve_stored_answers_hits_and_declines_misses(
    make_app: AppFactory, images: Images
) -> None:
    app = make_app()
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    app.client.get(f"/v1/beta/images/{iid}?w=30")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    def scope(query: bytes, method: str = "GET") -> dict[str, object]:
        path = f"/v1/beta/images/{iid}"
        return {"type": "http", "method": method, "path": path, "root_path": "",
                "query_string": query, "headers": []}  # fmt: skip

    def serve(query: bytes, method: str = "GET") -> bool:
        return asyncio.run(serve_stored(app.service, scope(query, method), send))

    assert serve(b"w=30")
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == app.client.get(f"/v1/beta/images/{iid}?w=30").content
    sent.clear()
    assert not serve(b"w=32")  # miss
    assert not serve(b"w=30", "HEAD")
    assert not serve(b"w=0")  # invalid
    assert sent == []  # declined before sending anything


def _requests(app: App, route: str) -> float:
    value = app.service.metrics.registry.get_sample_value(
        "image_service_http_requests_total",
        {
            "track": "canary",
            "version": "abc123",
            "tenant": "beta",
            "route": route,
            "method": "GET",
            "code": "200",
        },
    )
    return value or 0.0


def test_the_fast_path_labels_requests_with_the_route_the_judge_queries(
    pair: tuple[App, App], images: Images
) -> None:
    # The judge selects route=~"/v1/.*": a stored hit counted as "unmatched" would vanish
    # from every verdict (a delivery then sees no traffic at all).
    fast, full = pair
    iid = fast.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    path = f"/v1/beta/images/{iid}?w=30"
    _reply(full, path)  # render and store
    for app in pair:
        before = _requests(app, "/v1/{tenant}/images/{image_id}")
        assert _reply(app, path).status_code == 200
        assert _requests(app, "/v1/{tenant}/images/{image_id}") == before + 1
        assert _requests(app, "unmatched") == 0
