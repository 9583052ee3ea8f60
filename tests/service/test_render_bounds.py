"""Every render is bounded in time, AVIF included: the encoder counts against the deadline."""

from __future__ import annotations

import time
from dataclasses import replace

import pyvips
from image_service.config import Limits
from service_testkit import BETA_KEY, AppFactory, noise

DEADLINE = 1.0


def photo(width: int, height: int) -> bytes:
    return bytes(noise(width, height).gaussblur(1.5).cast("uchar").jpegsave_buffer(Q=85))


def test_avif_encode_counts_against_the_deadline(make_app: AppFactory) -> None:
    app = make_app(limits=replace(Limits(), max_processing_seconds=DEADLINE))
    iid = app.upload(photo(1400, 1000), tenant="beta", key=BETA_KEY).json()["id"]
    started = time.monotonic()
    reply = app.client.get(f"/v1/beta/images/{iid}?w=1300&format=avif&q=61")
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + 1.0, f"{reply.status_code} after {elapsed:.1f} s"
    if reply.status_code == 200:
        decoded = pyvips.Image.new_from_buffer(reply.content, "")
        assert decoded.get("vips-loader").startswith("heif")
        assert decoded.width == 1300
    else:
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"] in {"processing_timeout", "avif_too_large"}


def test_oversized_avif_is_refused_before_it_starts(make_app: AppFactory) -> None:
    app = make_app(limits=replace(Limits(), max_processing_seconds=10.0))
    iid = app.upload(photo(600, 400), tenant="beta", key=BETA_KEY).json()["id"]
    started = time.monotonic()
    reply = app.client.get(f"/v1/beta/images/{iid}?w=8192&format=avif")
    assert time.monotonic() - started < 1.0
    assert reply.status_code == 422
    assert reply.json()["error"] == "avif_too_large"
    assert "pixels" in reply.json()["detail"]
    # The same size in another format is still served: the limit is the AVIF encoder's.
    webp = app.client.get(f"/v1/beta/images/{iid}?w=3000&format=webp")
    assert webp.status_code == 200
    assert pyvips.Image.new_from_buffer(webp.content, "").width == 3000


def test_a_small_avif_renders_within_the_deadline(make_app: AppFactory) -> None:
    app = make_app(limits=replace(Limits(), max_processing_seconds=DEADLINE))
    iid = app.upload(photo(2000, 1333), tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.get(f"/v1/beta/images/{iid}?w=400&format=avif")
    assert reply.status_code == 200, reply.text
    decoded = pyvips.Image.new_from_buffer(reply.content, "")
    assert (decoded.width, decoded.height) == (400, 267)
