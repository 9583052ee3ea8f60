"""Fixtures for the image service: generated images, tenants, an in-process app, a real server.

Helpers live in service_testkit.py; with --import-mode=importlib this folder is not on sys.path,
so it is added here (the module name is unique across the repository's test folders).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_testkit import (
    _libvips,
    app,
    images,
    live_server,
    make_app,
    settings,
    tenants,
)

__all__ = ["_libvips", "app", "images", "live_server", "make_app", "settings", "tenants"]
