"""Give freed heap back to the system after heavy work (glibc keeps it in its arenas)."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

HEAVY_INPUT_BYTES = 256 * 1024  # compressed; decodes of such files leave MBs of freed heap


@functools.cache
def _trimmer() -> Callable[[], None]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]

    def run() -> None:
        trim(0)

    return run


def release_after(input_bytes: int, threshold: int = HEAVY_INPUT_BYTES) -> bool:
    """malloc_trim(0) after a job on a large input; True when it ran. A few ms, in the worker."""
    if input_bytes < threshold:
        return False
    _trimmer()()
    return True
