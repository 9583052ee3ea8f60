"""Container checks: a file is accepted only when its image data ends where the file ends."""

from __future__ import annotations

import pytest
from image_service.formats import container_intact
from service_testkit import ACME_KEY, App, Images

HTML = b"<html><script>alert(document.domain)</script></html>"


def polyglots(images: Images) -> dict[str, bytes]:
    return {
        "jpeg + html + end marker": images.jpeg + HTML + b"\xff\xd9",
        "jpeg + html + end marker twice": images.jpeg + HTML + b"\xff\xd9\xff\xd9",
        "gif + html + trailer": images.gif + HTML + b";",
        "gif + trailer twice": images.gif + b";",
        "png + html + fake IEND": images.png + HTML + images.png[-12:],
        "webp + html inside riff size": images.webp[:4]
        + (int.from_bytes(images.webp[4:8], "little") + len(HTML)).to_bytes(4, "little")
        + images.webp[8:]
        + HTML,
    }


@pytest.mark.parametrize(
    "name",
    [
        "jpeg + html + end marker",
        "jpeg + html + end marker twice",
        "gif + html + trailer",
        "gif + trailer twice",
        "png + html + fake IEND",
        "webp + html inside riff size",
    ],
)
def test_polyglots_are_refused_and_nothing_is_stored(app: App, images: Images, name: str) -> None:
    data = polyglots(images)[name]
    reply = app.upload(data)
    assert reply.status_code in (415, 422), reply.text
    assert "error" in reply.json()
    assert app.stored_files() == []


@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "webp"])
def test_real_images_are_intact_and_any_cut_is_not(images: Images, kind: str) -> None:
    data: bytes = getattr(images, kind)
    assert container_intact(kind, data)
    assert not container_intact(kind, data + HTML)
    assert not container_intact(kind, data[:-1])
    assert not container_intact(kind, data[: len(data) // 2])


def test_jpeg_end_marker_inside_entropy_data_is_not_the_end(images: Images) -> None:
    # A second image appended after the first is trailing data, even though it ends in FFD9.
    assert not container_intact("jpeg", images.jpeg + images.jpeg)


def test_the_accepted_images_still_upload(app: App, images: Images) -> None:
    for data in (images.jpeg, images.png, images.gif, images.webp, images.png_alpha):
        assert app.upload(data, key=ACME_KEY).status_code == 201
