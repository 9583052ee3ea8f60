"""The ledger: append-only JSON lines locally (lock + fsync) and in versioned S3 (moto)."""

import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from delivery.ledger import (
    SCHEMA_VERSION,
    FileLedger,
    LedgerError,
    S3Ledger,
    deliveries,
    open_deliveries,
    open_ledger,
)
from moto import mock_aws


def rec(kind: str, did: str, **extra: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "kind": kind, "delivery_id": did, "env": "t", **extra}


def test_append_and_read_round_trip(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path / "l.jsonl")
    ledger.append(rec("started", "a", version="v1"))
    ledger.append(rec("finished", "a", version="v1", outcome="promoted"))
    read = ledger.read()
    assert [r["kind"] for r in read.records] == ["started", "finished"]
    assert read.skipped == ()


def test_truncated_line_is_skipped_reported_and_next_append_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = FileLedger(path)
    ledger.append(rec("started", "a"))
    with path.open("a") as handle:  # a crash mid-write: half a line, no newline
        handle.write('{"schema_version": 1, "kind": "fin')
    ledger.append(rec("finished", "a", outcome="aborted"))
    read = ledger.read()
    assert [r["kind"] for r in read.records] == ["started", "finished"]
    assert len(read.skipped) == 1
    assert read.skipped[0].where.endswith(":2")
    assert "truncated" in read.skipped[0].error


def test_records_without_schema_version_are_refused_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = FileLedger(path)
    with pytest.raises(LedgerError, match="schema_version"):
        ledger.append({"kind": "started"})
    path.write_text('{"kind": "x"}\n{"schema_version": 99}\n')
    read = ledger.read()
    assert read.records == ()
    assert [s.error for s in read.skipped] == [
        "not a ledger record (no schema_version)",
        "schema_version 99 is newer than this tool",
    ]


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path / "l.jsonl")
    big = "x" * 20000  # larger than a pipe buffer: interleaving would break JSON

    def writer(n: int) -> None:
        for i in range(20):
            ledger.append(rec("step", f"{n}-{i}", blob=big))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    read = ledger.read()
    assert len(read.records) == 80
    assert read.skipped == ()
    for line in (tmp_path / "l.jsonl").read_text().splitlines():
        json.loads(line)


def test_fold_into_deliveries_and_find_open_ones() -> None:
    records = [
        rec("started", "a", version="v1"),
        rec("step", "a", step=0),
        rec("finished", "a", version="v1", outcome="promoted", steps=[{"step": 0}]),
        rec("started", "b", version="v2"),
        rec("step", "b", step=0),
        {**rec("started", "c", version="v3"), "env": "other"},
    ]
    views = deliveries(records, "t")
    assert [(d["delivery_id"], d["outcome"]) for d in views] == [("a", "promoted"), ("b", None)]
    assert views[1]["steps"] == [rec("step", "b", step=0)]
    assert [d["delivery_id"] for d in open_deliveries(records, "t")] == ["b"]
    assert [d["delivery_id"] for d in open_deliveries(records, "other")] == ["c"]


@mock_aws
def test_s3_ledger_needs_versioning_and_appends_objects() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="ledger")
    with pytest.raises(LedgerError, match="versioning enabled"):
        S3Ledger("ledger", "deliveries/staging", s3)
    s3.put_bucket_versioning(Bucket="ledger", VersioningConfiguration={"Status": "Enabled"})
    ledger = open_ledger("s3://ledger/deliveries/staging", Path("/"), client=s3)
    ledger.append(rec("started", "a"))
    ledger.append(rec("finished", "a", outcome="promoted"))
    s3.put_object(Bucket="ledger", Key="deliveries/staging/zz-broken.json", Body=b'{"sch')
    read = ledger.read()
    assert [r["kind"] for r in read.records] == ["started", "finished"]
    assert len(read.skipped) == 1
    assert read.skipped[0].where == "s3://ledger/deliveries/staging/zz-broken.json"


def test_open_ledger_rejects_bad_s3_location(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="expected s3://BUCKET/PREFIX"):
        open_ledger("s3://only-bucket", tmp_path)
    assert isinstance(open_ledger("rel/l.jsonl", tmp_path), FileLedger)
