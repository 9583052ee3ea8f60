"""memory: heap freed by a large render goes back to the system."""

from __future__ import annotations

import threading
from pathlib import Path

import pyvips
from image_service.config import Limits
from image_service.memory import release_after
from image_service.options import RenditionOptions
from image_service.transform import render


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def test_small_inputs_are_not_trimmed() -> None:
    assert not release_after(1000)


def test_a_large_render_returns_its_heap() -> None:
    big = pyvips.Image.gaussnoise(4000, 3000).cast("uchar").copy(interpretation="b-w")
    data = bytes(big.pngsave_buffer(compression=1))  # PNG: no shrink-on-load, a full decode
    options = RenditionOptions(width=300)

    def work() -> None:  # in a thread, like the service's workers (their own malloc arena)
        render(data, options, "jpeg", Limits(), (255, 255, 255))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    before = rss_bytes()
    assert release_after(len(data))
    # glibc keeps the freed decode buffers in the worker's arena (about 30 MB here) until
    # trimmed; a no-op trim would leave RSS where it was.
    assert before - rss_bytes() >= 4 * 2**20


def test_a_render_from_the_file_equals_the_render_from_the_bytes(tmp_path: Path) -> None:
    """Local originals are rendered from their files (ADR 171); the output must not change."""
    rgb = pyvips.Image.gaussnoise(640, 400).cast("uchar").bandjoin([128, 64])
    originals = {
        "jpeg": bytes(rgb.copy(interpretation="srgb").jpegsave_buffer(Q=90)),
        "png": bytes(rgb.copy(interpretation="srgb").pngsave_buffer()),
        "webp": bytes(rgb.copy(interpretation="srgb").webpsave_buffer()),
    }
    cases = [RenditionOptions(width=100), RenditionOptions(80, 80, "cover"), RenditionOptions()]
    for fmt, data in originals.items():
        path = tmp_path / fmt
        path.write_bytes(data)
        for options in cases:
            from_bytes = render(data, options, "png", Limits(), (255, 255, 255))
            from_file = render(path, options, "png", Limits(), (255, 255, 255))
            assert (from_file.width, from_file.height) == (from_bytes.width, from_bytes.height)
            assert from_file.data == from_bytes.data, (fmt, options)
