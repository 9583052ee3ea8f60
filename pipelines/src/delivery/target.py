"""The one seam between the pipeline and where versions run: the `Target` protocol.

`PulumiTarget` drives a Pulumi stack through the Automation API; `LocalTarget` drives processes on
this machine. The delivery flow (`flow.py`) knows nothing else about either.
"""

from dataclasses import dataclass, field
from typing import Protocol

from delivery.delta import Preview


class TargetError(RuntimeError):
    pass


@dataclass(frozen=True)
class TargetState:
    stable_version: str
    canary_version: str  # "" when no canary runs
    canary_weight: int  # percent; the baseline has the same

    @property
    def canary_running(self) -> bool:
        return bool(self.canary_version) or self.canary_weight > 0


@dataclass(frozen=True)
class VersionInfo:
    version: str  # the label every metric series carries
    commit: str
    commit_time: str  # ISO 8601, for lead time


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Endpoints:
    """Where each track answers directly, bypassing the gateway, and whom probes act as."""

    stable: str  # base URLs, e.g. http://127.0.0.1:8081
    baseline: str
    canary: str
    tenant: str
    api_key: str = field(repr=False)
    gateway_metrics: str = ""  # the gateway's Prometheus exporter; "" when there is none


@dataclass(frozen=True)
class Health:
    """One track's process as the target sees it right now."""

    track: str
    alive: bool
    ready: bool
    exit_status: int | None = None  # how it ended, when it has and we know
    detail: str = ""  # why it is not ready (the /readyz answer or the connection error)


class Target(Protocol):
    def resolve(self, version: str) -> VersionInfo:
        """Turn what the user typed into the version label, commit and commit time."""
        ...

    def state(self) -> TargetState: ...

    def preview(self, version: VersionInfo) -> Preview:
        """What deploying `version` as a canary (at weight 0) would change."""
        ...

    def preview_platform(self) -> Preview:
        """What applying the platform code as it stands would change (no version change)."""
        ...

    def apply_platform(self) -> None:
        """Apply exactly what `preview_platform` showed (an update plan where supported)."""
        ...

    def start_canary(self, version: VersionInfo) -> None:
        """Run the canary and a fresh baseline of the stable version, both at weight 0."""
        ...

    def post_deploy_checks(self) -> list[Check]: ...

    def set_weight(self, weight: int) -> None: ...

    def promote(self) -> None:
        """stable := canary; the canary and the baseline are removed."""
        ...

    def abort(self) -> None:
        """Canary and baseline weights to 0, then removed. Stable is untouched."""
        ...

    def metrics_url(self) -> str: ...

    def endpoints(self) -> Endpoints | None:
        """Each track's own URL once canary and baseline run; None where there is none to
        reach (the probes and the resource checks are then skipped, with a note)."""
        ...

    def health(self) -> tuple[Health, ...]:
        """Canary and baseline: alive and ready? Empty where the target cannot tell."""
        ...
