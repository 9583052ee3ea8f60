"""Domain errors: what went wrong, in the service's own words. No HTTP here.

`DomainError` carries a stable machine code and a human detail. The HTTP layer turns it into a
status and headers through one table (http_errors.py); the image code never names a status.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the service will not carry out: a stable code, a detail, maybe a retry hint."""

    def __init__(self, code: str, detail: str, retry_after: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


class ConfigError(Exception):
    """Start-up configuration is invalid; the process refuses to start."""
