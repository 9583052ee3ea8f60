"""The ledger: an append-only record of every delivery, as typed records stored as JSON lines.

A delivery writes three kinds of record: `Started`, one `StepRecord` per judged look, and
`Finished`, which repeats everything needed to read the delivery on its own (what was delivered,
the delta gate's decision, post-deploy checks, steps with verdicts, outcome and reason). Records
are frozen dataclasses; `to_json`/`from_json` are the only places that know the JSON shape.

Every line carries `schema_version`. Changes that only add fields keep the version (readers ignore
what they do not know and default what is missing), so lines written before the records were typed
read as they are; `tests/pipelines/fixtures/ledger_v1.jsonl` holds such lines. An incompatible
change bumps the version, and this tool skips (and reports) lines newer than it understands.

Storage: locally one file, appended under an exclusive lock and fsynced; on AWS one S3 object per
record in a versioned bucket, written with If-None-Match so nothing is ever overwritten. Reading
skips, and reports, a damaged line.
"""

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol

from delivery.target import Check

SCHEMA_VERSION = 1


class Outcome(StrEnum):
    """How a delivery ended: the one vocabulary of the ledger, the CLI and DORA."""

    PROMOTED = "promoted"  # the canary became stable
    APPLIED = "applied"  # a platform delivery applied its change
    ABORTED = "aborted"  # the canary was removed (judge, checks, stop, error, recovery)
    REFUSED = "refused"  # nothing was changed (delta gate, redeploy, busy platform)


class Change(StrEnum):
    SERVICE = "service"  # a version of the service, as a canary
    PLATFORM = "platform"  # the platform code alone


class LedgerError(Exception):
    pass


@dataclass(frozen=True)
class PlannedStep:
    weight: int
    bake_seconds: float


@dataclass(frozen=True)
class Subject:
    """What one delivery delivers, as its `started` and `finished` records both state it."""

    version: str
    commit: str = ""
    commit_time: str = ""  # ISO 8601: lead time starts here
    stable_version: str = ""
    target: str = ""
    change: Change = Change.SERVICE
    fixes: str = ""  # the version this delivery fixes (DORA's failed changes)
    started_at: str = ""
    delta: Mapping[str, Any] = field(default_factory=dict)  # the gate's GateDecision.to_json()
    overrides: tuple[str, ...] = ()  # "TYPE:OP: reason"
    planned: tuple[PlannedStep, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "commit": self.commit,
            "commit_time": self.commit_time,
            "stable_version": self.stable_version,
            "target": self.target,
            "change": self.change.value,
            "fixes": self.fixes,
            "started_at": self.started_at,
            "delta": dict(self.delta),
            "overrides": list(self.overrides),
            "planned": [{"weight": p.weight, "bake_seconds": p.bake_seconds} for p in self.planned],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Subject":
        return cls(
            version=str(raw.get("version") or ""),
            commit=str(raw.get("commit") or ""),
            commit_time=str(raw.get("commit_time") or ""),
            stable_version=str(raw.get("stable_version") or ""),
            target=str(raw.get("target") or ""),
            change=Change(raw.get("change") or Change.SERVICE),
            fixes=str(raw.get("fixes") or ""),
            started_at=str(raw.get("started_at") or ""),
            delta=dict(raw.get("delta") or {}),
            overrides=tuple(str(o) for o in raw.get("overrides") or ()),
            planned=tuple(
                PlannedStep(int(p["weight"]), float(p["bake_seconds"]))
                for p in raw.get("planned") or ()
            ),
        )


@dataclass(frozen=True)
class StepResult:
    """One judged look at one step: the weight, the window, the judge's verdict."""

    step: int
    weight: int
    started_at: str
    ended_at: str
    duration_seconds: float
    bake_seconds: float
    extensions: int
    verdict: Mapping[str, Any]  # the judge's Verdict.to_json()
    metrics_error: str = ""
    checks: tuple[Check, ...] = ()  # beside the judge: probes, liveness, gateway, resources

    def to_json(self) -> dict[str, Any]:
        checks = [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks]
        return {
            **({"checks": checks} if checks else {}),
            "step": self.step,
            "weight": self.weight,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_seconds": self.duration_seconds,
            "bake_seconds": self.bake_seconds,
            "extensions": self.extensions,
            "verdict": dict(self.verdict),
            "metrics_error": self.metrics_error,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "StepResult":
        return cls(
            step=int(raw["step"]),
            weight=int(raw["weight"]),
            started_at=str(raw.get("started_at") or ""),
            ended_at=str(raw.get("ended_at") or ""),
            duration_seconds=float(raw.get("duration_seconds") or 0.0),
            bake_seconds=float(raw.get("bake_seconds") or 0.0),
            extensions=int(raw.get("extensions") or 0),
            verdict=dict(raw.get("verdict") or {}),
            metrics_error=str(raw.get("metrics_error") or ""),
            checks=tuple(
                Check(str(c.get("name", "")), bool(c.get("passed")), str(c.get("detail", "")))
                for c in raw.get("checks") or ()
                if isinstance(c, Mapping)
            ),
        )


@dataclass(frozen=True)
class Started:
    kind: ClassVar[str] = "started"
    delivery_id: str
    env: str
    recorded_at: str
    subject: Subject
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class StepRecord:
    kind: ClassVar[str] = "step"
    delivery_id: str
    env: str
    recorded_at: str
    version: str
    result: StepResult
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class Finished:
    kind: ClassVar[str] = "finished"
    delivery_id: str
    env: str
    recorded_at: str
    subject: Subject
    ended_at: str
    outcome: Outcome
    reason: str
    error: str = ""  # set when an error, not a verdict, ended the delivery
    checks: tuple[Check, ...] = ()  # post-deploy checks of the canary
    steps: tuple[StepResult, ...] = ()
    schema_version: int = SCHEMA_VERSION


Record = Started | StepRecord | Finished


def to_json(record: Record) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": record.schema_version,
        "kind": record.kind,
        "delivery_id": record.delivery_id,
        "env": record.env,
        "recorded_at": record.recorded_at,
    }
    if isinstance(record, StepRecord):
        return {**doc, "version": record.version, **record.result.to_json()}
    doc.update(record.subject.to_json())
    if isinstance(record, Finished):
        doc.update(
            ended_at=record.ended_at,
            outcome=record.outcome.value,
            reason=record.reason,
            error=record.error,
            checks=[
                {"name": c.name, "passed": c.passed, "detail": c.detail} for c in record.checks
            ],
            steps=[s.to_json() for s in record.steps],
        )
    return doc


def from_json(raw: Mapping[str, Any]) -> Record | None:
    """The typed record of a stored line; None for a line of no known kind."""
    kind = raw.get("kind")
    try:
        ident = (str(raw["delivery_id"]), str(raw["env"]), str(raw.get("recorded_at") or ""))
        version = int(raw["schema_version"])
        if kind == "started":
            return Started(*ident, Subject.from_json(raw), version)
        if kind == "step":
            return StepRecord(
                *ident, str(raw.get("version") or ""), StepResult.from_json(raw), version
            )
        if kind == "finished":
            return Finished(
                *ident,
                subject=Subject.from_json(raw),
                ended_at=str(raw.get("ended_at") or ""),
                outcome=Outcome(raw["outcome"]),
                reason=str(raw.get("reason") or ""),
                error=str(raw.get("error") or ""),
                checks=tuple(
                    Check(str(c["name"]), bool(c["passed"]), str(c.get("detail", "")))
                    for c in raw.get("checks") or ()
                ),
                steps=tuple(StepResult.from_json(s) for s in raw.get("steps") or ()),
                schema_version=version,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerError(f"malformed {kind} record: {exc!r}") from exc
    return None


@dataclass(frozen=True)
class Skipped:
    where: str  # "path:line" or the S3 key
    error: str


@dataclass(frozen=True)
class LedgerRead:
    records: tuple[Mapping[str, Any], ...]  # as stored: `deliver ledger --json` prints them
    skipped: tuple[Skipped, ...]


class Ledger(Protocol):
    location: str

    def append(self, record: Record | Mapping[str, Any]) -> None: ...

    def read(self) -> LedgerRead: ...


def _encode(record: Record | Mapping[str, Any]) -> str:
    doc = record if isinstance(record, Mapping) else to_json(record)
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise LedgerError(f"ledger records must carry schema_version {SCHEMA_VERSION}")
    line = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return line + "\n"


def _decode(line: str, where: str) -> Mapping[str, Any] | Skipped:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return Skipped(where, f"not JSON (truncated write?): {exc.msg}")
    if not isinstance(value, dict) or not isinstance(value.get("schema_version"), int):
        return Skipped(where, "not a ledger record (no schema_version)")
    if value["schema_version"] > SCHEMA_VERSION:
        return Skipped(where, f"schema_version {value['schema_version']} is newer than this tool")
    return value


class FileLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def append(self, record: Record | Mapping[str, Any]) -> None:
        data = _encode(record).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A crash mid-write leaves a line without its newline: start a fresh line so the
            # damage stays confined to that one record.
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    def read(self) -> LedgerRead:
        if not self.path.exists():
            return LedgerRead((), ())
        records: list[Mapping[str, Any]] = []
        skipped: list[Skipped] = []
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                item = _decode(line, f"{self.path}:{number}")
                (skipped if isinstance(item, Skipped) else records).append(item)  # type: ignore[arg-type]
        return LedgerRead(tuple(records), tuple(skipped))


class S3Ledger:
    """One object per record under `prefix/`, keys sortable by time, in a versioned bucket."""

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        if client is None:
            import boto3  # only AWS environments pay for the import

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}"
        status = client.get_bucket_versioning(Bucket=bucket).get("Status")
        if status != "Enabled":
            raise LedgerError(f"ledger bucket {bucket} must have versioning enabled (is {status})")

    def append(self, record: Record | Mapping[str, Any]) -> None:
        body = _encode(record)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:]
        key = f"{self.prefix}/{stamp}-{uuid.uuid4().hex[:12]}.json"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), IfNoneMatch="*")

    def read(self) -> LedgerRead:
        records: list[Mapping[str, Any]] = []
        skipped: list[Skipped] = []
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        for key in sorted(keys):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            item = _decode(body.decode("utf-8", errors="replace"), f"s3://{self.bucket}/{key}")
            (skipped if isinstance(item, Skipped) else records).append(item)  # type: ignore[arg-type]
        return LedgerRead(tuple(records), tuple(skipped))


def open_ledger(location: str, repo_root: Path, client: Any = None) -> Ledger:
    if location.startswith("s3://"):
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not bucket or not prefix:
            raise LedgerError(f"ledger location {location!r}: expected s3://BUCKET/PREFIX")
        return S3Ledger(bucket, prefix, client)
    path = Path(location)
    return FileLedger(path if path.is_absolute() else repo_root / path)


@dataclass(frozen=True)
class DeliveryView:
    """One delivery folded from its records: closed once `finished` is there."""

    delivery_id: str
    env: str
    subject: Subject
    steps: tuple[StepResult, ...]
    finished: Finished | None

    @property
    def outcome(self) -> Outcome | None:
        return None if self.finished is None else self.finished.outcome

    @property
    def reason(self) -> str:
        return "" if self.finished is None else self.finished.reason


def typed(records: Iterable[Mapping[str, Any]]) -> tuple[list[Record], list[str]]:
    """The records of known kinds, typed, and why each malformed one was left out."""
    good: list[Record] = []
    bad: list[str] = []
    for raw in records:
        try:
            record = from_json(raw)
        except LedgerError as exc:
            bad.append(f"{raw.get('delivery_id', '?')}: {exc}")
            continue
        if record is not None:
            good.append(record)
    return good, bad


def deliveries(records: Sequence[Mapping[str, Any]], env: str | None = None) -> list[DeliveryView]:
    """Fold stored records into one view per delivery, in start order."""
    views: dict[str, DeliveryView] = {}
    for rec in typed(records)[0]:
        if env is not None and rec.env != env:
            continue
        did = rec.delivery_id
        if isinstance(rec, Started):
            views[did] = DeliveryView(did, rec.env, rec.subject, (), None)
        elif isinstance(rec, StepRecord) and did in views:
            view = views[did]
            views[did] = DeliveryView(did, view.env, view.subject, (*view.steps, rec.result), None)
        elif isinstance(rec, Finished):
            views[did] = DeliveryView(did, rec.env, rec.subject, rec.steps, rec)
    return list(views.values())


def open_deliveries(records: Sequence[Mapping[str, Any]], env: str) -> list[DeliveryView]:
    """Deliveries that started and never finished: what a crash leaves behind."""
    return [d for d in deliveries(records, env) if d.finished is None]
