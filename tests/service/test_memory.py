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
