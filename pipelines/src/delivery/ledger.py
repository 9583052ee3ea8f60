"""The ledger: an append-only record of every delivery, as JSON lines with a schema version.

Records are events of one delivery (`started`, `step`, `finished`); the `finished` record repeats
everything needed to read a delivery on its own (env, version, commit, times, delta summary,
overrides, steps with verdicts and evidence, outcome). Locally it is one file, appended under an
exclusive lock and fsynced; on AWS each record is its own S3 object in a versioned bucket, written
with If-None-Match so nothing is ever overwritten. Reading skips, and reports, a damaged line.
"""

import fcntl
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SCHEMA_VERSION = 1


class LedgerError(Exception):
    pass


@dataclass(frozen=True)
class Skipped:
    where: str  # "path:line" or the S3 key
    error: str


@dataclass(frozen=True)
class LedgerRead:
    records: tuple[Mapping[str, Any], ...]
    skipped: tuple[Skipped, ...]


class Ledger(Protocol):
    location: str

    def append(self, record: Mapping[str, Any]) -> None: ...

    def read(self) -> LedgerRead: ...


def _encode(record: Mapping[str, Any]) -> str:
    if record.get("schema_version") != SCHEMA_VERSION:
        raise LedgerError(f"ledger records must carry schema_version {SCHEMA_VERSION}")
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
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

    def append(self, record: Mapping[str, Any]) -> None:
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

    def append(self, record: Mapping[str, Any]) -> None:
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


def deliveries(
    records: Sequence[Mapping[str, Any]], env: str | None = None
) -> list[dict[str, Any]]:
    """Fold event records into one view per delivery, in start order."""
    by_id: dict[str, dict[str, Any]] = {}
    for rec in records:
        if env is not None and rec.get("env") != env:
            continue
        did = str(rec.get("delivery_id", ""))
        kind = rec.get("kind")
        if kind == "started":
            by_id[did] = {**rec, "steps": [], "outcome": None}
        elif kind == "step" and did in by_id:
            by_id[did]["steps"].append(dict(rec))
        elif kind == "finished":
            by_id[did] = {**by_id.get(did, {}), **rec}
    return list(by_id.values())


def open_deliveries(records: Sequence[Mapping[str, Any]], env: str) -> list[dict[str, Any]]:
    """Deliveries that started and never finished: what a crash leaves behind."""
    return [d for d in deliveries(records, env) if d.get("outcome") is None]
