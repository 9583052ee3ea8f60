"""No SSRF surface: the service never fetches a URL, and SVG / external entities never load.

A loopback listener stands in for an internal endpoint; every hostile upload and option points at
it. The proof is that it accepts no connection while a real server handles all of them.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import bombs
import httpx
import pytest
import pyvips
from reliability_kit import ALPHA_KEY, BRAVO_KEY, Starter, auth, record, seed_images


@dataclass
class Listener:
    """Accepts and counts TCP connections on 127.0.0.1 until closed."""

    sock: socket.socket
    accepted: list[bytes] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        self.sock.settimeout(0.1)  # so the loop notices `stopping` (close() does not wake accept)
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    self.accepted.append(conn.recv(200))
                except OSError:
                    self.accepted.append(b"")


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    watcher = Listener(sock)
    thread = threading.Thread(target=watcher.serve, daemon=True)
    thread.start()
    yield watcher
    watcher.stopping.set()
    thread.join(timeout=5)
    sock.close()


def hostile_payloads(url: str) -> dict[str, bytes]:
    svg_image = (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="10" height="10"><image href="{url}/a.png" xlink:href="{url}/b.png" '
        f'width="10" height="10"/></svg>'
    ).encode()
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY ext SYSTEM "{url}/xxe">]>'
        f'<svg xmlns="http://www.w3.org/2000/svg"><text>&ext;</text></svg>'
    ).encode()
    css = (
        f'<svg xmlns="http://www.w3.org/2000/svg"><style>@import url("{url}/c.css");</style>'
        f'<rect fill="url({url}/f#x)" width="5" height="5"/></svg>'
    ).encode()
    xmp = (
        b"http://ns.adobe.com/xap/1.0/\x00"
        + f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "{url}/xmp">]><x>&e;</x>'.encode()
    )
    jpeg_xmp = bombs.jpeg_with_segments([bombs.app_segment(0xE1, xmp)])
    return {
        "svg with external image": svg_image,
        "svg with external entity (XXE)": xxe,
        "svg with css import": css,
        "svgz": gzip.compress(svg_image),
        "jpeg magic + svg": b"\xff\xd8\xff\xe0" + svg_image,
        "png magic + svg": b"\x89PNG\r\n\x1a\n" + svg_image,
        "html with img": f'<html><img src="{url}/h.png"></html>'.encode(),
        "plain url": url.encode(),
        "jpeg with XXE in XMP": jpeg_xmp,
    }


def test_svg_loader_is_blocked_in_process() -> None:
    """harden_libvips (run by conftest, as the service does at start) turns SVG loading off."""
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    with pytest.raises(pyvips.Error):
        pyvips.Image.svgload_buffer(svg)
    with pytest.raises(pyvips.Error):
        pyvips.Image.new_from_buffer(svg, "")


def test_no_outbound_connection(service: Starter, listener: Listener) -> None:
    proc = service("ssrf")
    payloads = hostile_payloads(listener.url)
    seeds = seed_images()
    refused = 0
    with httpx.Client(base_url=proc.url, timeout=30) as client:
        for name, data in payloads.items():
            for tenant, key in (("alpha", ALPHA_KEY), ("bravo", BRAVO_KEY)):
                reply = client.post(f"/v1/{tenant}/images", content=data, headers=auth(key))
                if name == "jpeg with XXE in XMP" and reply.status_code == 201:
                    # A valid JPEG: stored, but metadata is never interpreted or served.
                    iid = reply.json()["id"]
                    out = client.get(f"/v1/bravo/images/{iid}?w=8&format=png")
                    assert out.status_code in (200, 404), out.text
                    continue
                assert reply.status_code in (415, 422), (name, reply.status_code, reply.text)
                refused += 1
        # Options that smell like a URL are unknown options, never fetched.
        up = client.post("/v1/bravo/images", content=seeds["png"], headers=auth(BRAVO_KEY))
        iid = up.json()["id"]
        for query in (
            f"url={listener.url}/u",
            f"src={listener.url}",
            f"w=10&overlay={listener.url}",
        ):
            reply = client.get(f"/v1/bravo/images/{iid}?{query}")
            assert reply.status_code == 400, (query, reply.text)
            refused += 1
        # Arbitrary absolute-URI request targets do not proxy anywhere either.
        reply = client.get(f"{proc.url}/{listener.url}/x")
        assert reply.status_code == 404
    time.sleep(0.5)  # anything asynchronous would have connected by now
    record("no SSRF surface", hostile_requests=refused, outbound_connections=len(listener.accepted))
    assert listener.accepted == []


def test_listener_would_see_a_connection(listener: Listener) -> None:
    """The instrument works: a fetch of its URL is counted (so 0 above means something)."""
    with pytest.raises(httpx.HTTPError):
        httpx.get(listener.url + "/probe", timeout=2)
    time.sleep(0.2)
    assert len(listener.accepted) == 1
    assert listener.accepted[0].startswith(b"GET /probe")
