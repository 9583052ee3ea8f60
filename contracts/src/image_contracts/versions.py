"""Version syntax: what may name a deployable version of a service, in every layer.

A version travels as an image tag (`repo:VERSION`), a Kubernetes label value (`version=...`),
a Prometheus label, a ledger field and the service's `IMAGE_SERVICE_VERSION`. So it must satisfy
the strictest of those rules, the Kubernetes label value (apimachinery's
`IsValidLabelValue`: at most 63 characters, alphanumerics at both ends, `-_.` inside), which is
also a valid OCI tag. Digests (`sha256:...`) contain `:` and are 71 characters long, so they are
not versions: an image is pinned by its immutable tag in an immutable registry (ADR 004).
"""

import re

MAX_LENGTH = 63
_PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
# Moving names that would make "the same version" mean different bytes over time.
MUTABLE_NAMES = frozenset({"latest", "stable", "main", "master", "head"})


def version_error(value: str) -> str | None:
    """Why `value` is not a valid version, or None when it is."""
    if not _PATTERN.fullmatch(value):
        return (
            f"version {value!r} must be 1-{MAX_LENGTH} characters of [A-Za-z0-9_.-], "
            "starting and ending with a letter or digit (a Kubernetes label value and an "
            "image tag); digests are not versions"
        )
    if value.lower() in MUTABLE_NAMES:
        return f"version {value!r} is a moving name; use an immutable one such as a commit SHA"
    return None


def is_version(value: str) -> bool:
    return version_error(value) is None


def check_version(value: str) -> str:
    """Return `value`, or raise ValueError saying why it is not a version."""
    error = version_error(value)
    if error is not None:
        raise ValueError(error)
    return value
