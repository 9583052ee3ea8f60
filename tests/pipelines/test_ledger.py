"""The ledger: append-only JSON lines locally (lock + fsync) and in versioned S3 (moto)."""

import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from delivery.ledger import (
    SCHEMA_VERSION,
    Change,
    FileLedger,
    Finished,
    LedgerError,
    Outcome,
    PlannedStep,
    Record,
    S3Ledger,
    Started,
    StepRecord,
    StepResult,
    Subject,
    deliveries,
    from_json,
    open_deliveries,
    open_ledger,
    to_json,
    typed,
)
from delivery.target import Check
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
    step = {"step": 0, "weight": 10, "verdict": {"outcome": "pass"}}
    records = [
        rec("started", "a", version="v1"),
        rec("step", "a", **step),
        rec("finished", "a", version="v1", outcome="promoted", steps=[step]),
        rec("started", "b", version="v2"),
        rec("step", "b", **step),
        {**rec("started", "c", version="v3"), "env": "other"},
        rec("note", "d"),  # a kind this tool does not know is left alone
    ]
    views = deliveries(records, "t")
    assert [(d.delivery_id, d.outcome) for d in views] == [("a", Outcome.PROMOTED), ("b", None)]
    assert views[1].steps == (StepResult(0, 10, "", "", 0.0, 0.0, 0, {"outcome": "pass"}),)
    assert [d.delivery_id for d in open_deliveries(records, "t")] == ["b"]
    assert [d.delivery_id for d in open_deliveries(records, "other")] == ["c"]


def test_typed_records_round_trip_through_json() -> None:
    subject = Subject(
        "v2",
        commit="c0ffee",
        commit_time="2027-01-01T00:00:00+00:00",
        stable_version="v1",
        target="local",
        fixes="v0",
        started_at="2027-01-01T00:01:00+00:00",
        delta={"allowed": True, "kind": "service"},
        overrides=("aws:s3/bucket:Bucket:replace: migrating",),
        planned=(PlannedStep(10, 30.0), PlannedStep(50, 30.0)),
    )
    step = StepResult(0, 10, "a", "b", 30.0, 30.0, 1, {"outcome": "pass"}, "")
    records: list[Record] = [
        Started("d", "t", "now", subject),
        StepRecord("d", "t", "now", "v2", step),
        Finished(
            "d",
            "t",
            "now",
            subject,
            "later",
            Outcome.ABORTED,
            "error: boom",
            error="error: RuntimeError: boom",
            checks=(Check("runs as non-root", True, "uid 65534"),),
            steps=(step,),
        ),
    ]
    for record in records:
        stored = json.loads(json.dumps(to_json(record)))
        assert stored["schema_version"] == SCHEMA_VERSION
        assert from_json(stored) == record


def test_a_record_missing_what_its_kind_needs_is_left_out_and_said() -> None:
    good, bad = typed([rec("finished", "a", version="v1", outcome="maybe"), rec("step", "b")])
    assert good == []
    assert len(bad) == 2
    assert "'maybe' is not a valid Outcome" in bad[0]


FIXTURE = Path(__file__).parent / "fixtures" / "ledger_v1.jsonl"


def test_ledger_lines_written_before_typed_records_still_read() -> None:
    """The fixture is what `deliver` wrote before records were typed: every kind of ending."""
    read = FileLedger(FIXTURE).read()
    assert read.skipped == ()
    good, bad = typed(read.records)
    assert bad == []
    assert len(good) == len(read.records) == 15
    views = deliveries(read.records, "t")
    outcomes = [(d.subject.version, d.outcome) for d in views]
    assert outcomes == [
        ("v2", Outcome.PROMOTED),
        ("v3", Outcome.ABORTED),
        ("v3", Outcome.REFUSED),
        ("v4", Outcome.ABORTED),
        ("platform@v2", Outcome.APPLIED),
        ("v5", Outcome.REFUSED),
        ("v6", Outcome.ABORTED),  # recovered after a crash
        ("v7", Outcome.ABORTED),  # an orphan canary no ledger entry knew
    ]
    promoted = views[0]
    assert promoted.finished is not None
    assert promoted.subject.fixes == "v0"
    assert [s.weight for s in promoted.steps] == [10, 50]
    assert promoted.steps[0].verdict["outcome"] == "pass"
    assert promoted.finished.checks[0].name == "runs as non-root"
    assert views[4].subject.change is Change.PLATFORM
    assert views[6].reason.startswith("recovered")
    # Lines written today read back exactly as stored: the format only grew.
    for raw in read.records:
        record = from_json(raw)
        assert record is not None
        again = to_json(record)
        assert {k: v for k, v in again.items() if k in raw} == {
            k: v for k, v in raw.items() if k in again
        }


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
