"""The local environment's state file, `env.json`: what runs, the canary weight, reserved ports.

The one owner of that file: everything else reads an `EnvState` and changes it through `update`,
which holds an exclusive lock for the read-modify-write and replaces the file atomically, so a
`deliver` killed at any instant leaves either the old state or the new one. Reading creates
nothing, which is what lets `deliver status` look at a stopped environment without touching it.
"""

import contextlib
import dataclasses
import fcntl
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delivery.procs import Proc
from delivery.versions import Launch

# Processes of the environment itself, beside one service process per track.
SERVICES = ("prometheus", "haproxy", "traffic", "alertmanager")


class StateError(RuntimeError):
    pass


@dataclass(frozen=True)
class TrackRun:
    """One track's service process and how it was launched (so it can be started again)."""

    version: str
    launch: Launch
    proc: Proc

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "argv": list(self.launch.argv),
            "env": dict(self.launch.env),
            "proc": self.proc.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrackRun":
        launch = Launch(data["version"], tuple(data["argv"]), dict(data["env"]))
        return cls(data["version"], launch, Proc.from_json(data["proc"]))


@dataclass(frozen=True)
class EnvState:
    tracks: Mapping[str, TrackRun] = field(default_factory=dict)
    weight: int = 0  # percent to the canary; the baseline has the same
    slots: Mapping[str, int] = field(default_factory=dict)  # reserved port per slot
    prometheus: Proc | None = None
    haproxy: Proc | None = None
    traffic: Proc | None = None
    alertmanager: Proc | None = None

    def track(self, name: str) -> TrackRun | None:
        return self.tracks.get(name)

    def processes(self) -> tuple[Proc, ...]:
        """Every recorded process: the environment's own, then one per track."""
        own = (self.prometheus, self.haproxy, self.traffic, self.alertmanager)
        return (*(p for p in own if p is not None), *(t.proc for t in self.tracks.values()))

    def with_track(self, name: str, run: TrackRun) -> "EnvState":
        return dataclasses.replace(self, tracks={**self.tracks, name: run})

    def without_track(self, name: str) -> "EnvState":
        return dataclasses.replace(self, tracks={k: v for k, v in self.tracks.items() if k != name})

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "tracks": {name: run.to_json() for name, run in sorted(self.tracks.items())},
            "weight": self.weight,
            "slots": dict(self.slots),
        }
        for name in SERVICES:
            proc: Proc | None = getattr(self, name)
            if proc is not None:
                doc[name] = proc.to_json()
        return doc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EnvState":
        procs = {name: Proc.from_json(data[name]) for name in SERVICES if data.get(name)}
        return cls(
            tracks={n: TrackRun.from_json(t) for n, t in (data.get("tracks") or {}).items()},
            weight=int(data.get("weight", 0)),
            slots={str(k): int(v) for k, v in (data.get("slots") or {}).items()},
            **procs,
        )


class StateFile:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "env.json"

    def read(self) -> EnvState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return EnvState()
        try:
            return EnvState.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.path}: not a local environment state ({exc})") from exc

    @contextlib.contextmanager
    def _locked(self) -> Any:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "env.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def update(self, change: Callable[[EnvState], EnvState]) -> EnvState:
        """Apply `change` to the current state under the lock; returns the state written."""
        with self._locked():
            new = change(self.read())
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(new.to_json(), indent=2, sort_keys=True))
            tmp.replace(self.path)
        return new
