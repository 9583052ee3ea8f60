"""The Storage interface and the key layout both backends share.

Layout (tenant ids and image ids are validated before they reach here):
  {tenant}/originals/{sha256}
  {tenant}/renditions/{sha256}/{rendition digest}.{ext}
Deleting an image removes its original and its whole renditions prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """The backend failed (not 'not found'); `operation` labels the metric."""

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"storage {operation} failed: {detail}")
        self.operation = operation


class Storage(Protocol):
    """Blocking calls; the HTTP layer runs them in threads, never on the event loop."""

    backend: str

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store atomically: readers see the whole object or nothing."""

    def get(self, key: str) -> bytes | None: ...

    def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """The object's file when it is one on this machine (libvips then reads it in blocks
        instead of from a whole copy in memory); None: absent or not local, use get()."""

    def delete(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def usage(self, prefix: str) -> int:
        """Total bytes stored under prefix."""

    def check(self) -> None:
        """Raise StorageError when the backend is unreachable (readiness)."""


def original_key(tenant: str, image_id: str) -> str:
    return f"{tenant}/originals/{image_id}"


def originals_prefix(tenant: str) -> str:
    return f"{tenant}/originals/"


def renditions_prefix(tenant: str, image_id: str) -> str:
    return f"{tenant}/renditions/{image_id}/"


def rendition_key(tenant: str, image_id: str, digest: str, extension: str) -> str:
    return f"{renditions_prefix(tenant, image_id)}{digest}.{extension}"
