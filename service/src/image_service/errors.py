"""The one exception type the HTTP layer turns into a `{error, detail}` JSON reply."""

from __future__ import annotations


class ApiError(Exception):
    """A client-visible failure: an HTTP status, a stable machine code and a human detail."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


class ConfigError(Exception):
    """Start-up configuration is invalid; the process refuses to start."""
