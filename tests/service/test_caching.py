"""caching: rendition keys, ETags, If-None-Match, and what each track lets caches keep."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import pyvips
from image_service.caching import etag_for, none_match, rendition_digest
from image_service.options import RenditionOptions
from image_service.transform import render
from service_testkit import BETA_KEY, AppFactory, Images


def max_age(cache_control: str) -> int:
    found = re.search(r"max-age=(\d+)", cache_control)
    assert found, cache_control
    return int(found.group(1))


@pytest.mark.parametrize("track", ["canary", "baseline"])
def test_a_version_under_test_is_cached_for_minutes(
    make_app: AppFactory, images: Images, track: str
) -> None:
    app = make_app(track=track)
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    for _ in range(2):  # the render, then the stored copy
        reply = app.client.get(f"/v1/beta/images/{iid}?w=20")
        control = reply.headers["cache-control"]
        assert "immutable" not in control
        assert max_age(control) <= 600


def test_stable_is_immutable_and_promotion_keeps_every_rendition(
    make_app: AppFactory, images: Images
) -> None:
    canary = make_app(track="canary", version="v2")
    iid = canary.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    tried = canary.client.get(f"/v1/beta/images/{iid}?w=20")
    stored = {p: p.stat().st_mtime_ns for p in canary.stored_files()}
    # Promoted: the same code now runs as stable, on the same storage.
    stable = make_app(track="stable", version="v2")
    reply = stable.client.get(f"/v1/beta/images/{iid}?w=20")
    assert "immutable" in reply.headers["cache-control"]
    assert max_age(reply.headers["cache-control"]) >= 86400
    assert reply.headers["etag"] == tried.headers["etag"]  # caches revalidate, not refetch
    assert reply.content == tried.content
    # Nothing was re-rendered or rewritten: every stored rendition was still correct.
    assert {p: p.stat().st_mtime_ns for p in stable.stored_files()} == stored


def wrong_size_render(*args: object) -> object:
    """A canary's render bug: every rendition comes out half the asked width."""
    data, options, out_format, limits, background = args
    assert isinstance(options, RenditionOptions)
    half = RenditionOptions(width=max(1, (options.width or 2) // 2))
    return render(data, half, out_format, limits, background)  # type: ignore[arg-type]


def test_a_canary_with_other_render_code_never_writes_what_stable_serves(
    make_app: AppFactory, images: Images
) -> None:
    stable = make_app(track="stable")
    iid = stable.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    canary = make_app(track="canary", render=wrong_size_render)
    bad = canary.client.get(f"/v1/beta/images/{iid}?w=40")
    assert pyvips.Image.new_from_buffer(bad.content, "").width == 20  # the bug is real
    good = stable.client.get(f"/v1/beta/images/{iid}?w=40")
    assert pyvips.Image.new_from_buffer(good.content, "").width == 40
    assert good.headers["etag"] != bad.headers["etag"]


def test_digest_changes_with_every_input() -> None:
    base = ("a" * 64, RenditionOptions(width=10), "webp", "code1-vips8", (255, 255, 255))
    digest = rendition_digest(*base)
    variants = [
        ("b" * 64, *base[1:]),
        (base[0], RenditionOptions(width=11), *base[2:]),
        (base[0], RenditionOptions(width=10, dpr=Decimal(2)), *base[2:]),
        (*base[:2], "avif", *base[3:]),
        (*base[:3], "code2-vips8", base[4]),
        (*base[:4], (0, 0, 0)),
    ]
    assert len({digest, *(rendition_digest(*v) for v in variants)}) == len(variants) + 1


def test_etag_and_if_none_match() -> None:
    tag = etag_for("f" * 64)
    assert tag == '"' + "f" * 32 + '"'
    assert none_match(tag, tag)
    assert none_match(f'"x", W/{tag}', tag)
    assert none_match("*", tag)
    assert not none_match('"other"', tag)
    assert not none_match(None, tag)
    assert not none_match("", tag)


def test_an_encoder_setting_that_changes_bytes_changes_the_key(
    make_app: AppFactory, images: Images
) -> None:
    from dataclasses import replace

    from image_service.config import Limits

    fast = make_app(track="stable", limits=replace(Limits(), avif_effort=0))
    iid = fast.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    slow = make_app(track="stable", limits=replace(Limits(), avif_effort=6))
    a = fast.client.get(f"/v1/beta/images/{iid}?w=200&format=avif")
    b = slow.client.get(f"/v1/beta/images/{iid}?w=200&format=avif")
    assert a.content != b.content  # the setting really changes the bytes
    assert a.headers["etag"] != b.headers["etag"]  # so neither serves the other's
