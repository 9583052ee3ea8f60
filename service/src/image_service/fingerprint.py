"""What decides a rendition's bytes, as one short hash: the render code, not a hand-kept number.

The rendition key includes this, so a version whose render code differs (a canary with a bug,
say) writes under keys no other version reads, and a promotion of the same code keeps them all.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

# The modules whose code decides the output bytes for a URL: parsing and negotiation, the
# handler that calls render (it chooses what render is asked), render itself and its limits.
RENDER_MODULES = (
    "image_service.app",
    "image_service.config",
    "image_service.formats",
    "image_service.geometry",
    "image_service.negotiate",
    "image_service.options",
    "image_service.transform",
)


def _source(module_name: str) -> bytes:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    return Path(path).read_bytes() if path else module_name.encode()


@functools.cache
def _file_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def code_fingerprint(*callables: Callable[..., object]) -> str:
    """sha256 over the render modules' source and the source files of the given callables."""
    digest = hashlib.sha256()
    for name in RENDER_MODULES:
        digest.update(_source(name))
    for fn in callables:
        path = inspect.getsourcefile(fn)
        digest.update(_file_bytes(path) if path else fn.__qualname__.encode())
        digest.update(fn.__qualname__.encode())
    return digest.hexdigest()[:16]
