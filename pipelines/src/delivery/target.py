"""The one seam between the pipeline and where versions run: the `Target` protocol.

`PulumiTarget` drives a Pulumi stack through the Automation API; `LocalTarget` drives processes on
this machine. The delivery flow (`flow.py`) knows nothing else about either.
"""

from dataclasses import dataclass
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
