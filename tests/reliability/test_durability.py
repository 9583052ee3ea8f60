"""kill -9 during uploads, on local storage and on S3 (moto on 127.0.0.1).

Four clients upload distinct images; the server is SIGKILLed several times mid-stream and restarted
on the same storage. Afterwards every acknowledged (201) upload must be readable, and every object
visible under an originals key must be complete: its sha256 equals its id (the content address).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import pytest
import pyvips
from moto.server import ThreadedMotoServer
from reliability_kit import (
    BRAVO_KEY,
    Proc,
    auth,
    free_port,
    image_id,
    record,
    scale,
    start,
    stop,
)

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
UPLOADS = int(100 * scale())
KILLS = 2 if scale() <= 1 else 5


def distinct_images(count: int) -> list[bytes]:
    """Distinct, moderately large PNGs (so a kill has a write to land in)."""
    base = pyvips.Image.gaussnoise(192, 192, mean=128, sigma=50).cast("uchar")
    return [bytes((base + i).cast("uchar").pngsave_buffer(compression=1)) for i in range(count)]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def upload_with_kills(
    workdir: Path, store: str, extra: dict[str, str], images: list[bytes]
) -> tuple[set[str], int, int]:
    """Upload every image once, SIGKILLing the server KILLS times; return acknowledged ids."""
    acked: set[str] = set()
    refused = 0
    lock = threading.Lock()
    port = free_port()
    proc: Proc = start(workdir, "durable", store, port=port, extra=extra)
    chunks = [images[i :: KILLS + 1] for i in range(KILLS + 1)]
    kills = 0
    try:
        for round_no, chunk in enumerate(chunks):
            done = threading.Event()
            round_acks = [0]

            def one(
                data: bytes,
                url: str = proc.url,
                done: threading.Event = done,
                round_acks: list[int] = round_acks,
                half: int = max(1, len(chunk) // 2),
            ) -> None:
                nonlocal refused
                try:
                    reply = httpx.post(
                        f"{url}/v1/bravo/images", content=data, headers=auth(BRAVO_KEY), timeout=30
                    )
                except httpx.TransportError:
                    return  # killed mid-request: not acknowledged, so no promise
                with lock:
                    if reply.status_code == 201:
                        acked.add(reply.json()["id"])
                        round_acks[0] += 1
                        if round_acks[0] >= half:
                            done.set()
                    else:
                        refused += 1

            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(one, data) for data in chunk]
                if round_no < KILLS:
                    done.wait(timeout=30)  # about half the round acknowledged: kill mid-stream
                    stop(proc, kill=True)
                    kills += 1
                for future in futures:
                    future.result()
            if round_no < KILLS:
                proc = start(workdir, "durable", store, port=port, extra=extra)
    finally:
        stop(proc)
    return acked, refused, kills


def check_readable(workdir: Path, store: str, extra: dict[str, str], acked: set[str]) -> int:
    proc = start(workdir, "durable-check", store, extra=extra)
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as client:
            missing = [
                iid
                for iid in acked
                if client.get(f"/v1/bravo/images/{iid}?w=16").status_code != 200
            ]
    finally:
        stop(proc)
    return len(missing)


def test_kill_during_uploads_local(tmp_path: Path) -> None:
    images = distinct_images(UPLOADS)
    store = tmp_path / "store"
    acked, refused, kills = upload_with_kills(tmp_path, str(store), {}, images)
    originals = [p for p in (store / "bravo" / "originals").iterdir()]
    visible = [p for p in originals if not p.name.startswith(".")]
    partial = [p for p in visible if hashlib.sha256(p.read_bytes()).hexdigest() != p.name]
    leftovers = [p for p in originals if p.name.startswith(".")]
    missing = check_readable(tmp_path, str(store), {}, acked)
    record(
        "durability (local)",
        uploads=len(images),
        kills=kills,
        acknowledged=len(acked),
        partial_visible=len(partial),
        ack_missing=missing,
        temp_leftovers=len(leftovers),
    )
    assert kills == KILLS
    assert 0 < len(acked) < len(images)  # some were acknowledged, some were cut off
    assert partial == []
    assert missing == 0
    assert refused == 0
    assert {p.name for p in visible} >= acked


def test_kill_during_uploads_s3(tmp_path: Path, moto_endpoint: str) -> None:
    bucket = "durability"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    extra = {**CREDENTIALS, "IMAGE_SERVICE_S3_ENDPOINT": moto_endpoint}
    store = f"s3://{bucket}/imgs"
    images = distinct_images(UPLOADS)
    acked, refused, kills = upload_with_kills(tmp_path, store, extra, images)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="imgs/bravo/originals/")
    keys = [o["Key"] for o in listing.get("Contents", [])]
    partial = [
        k
        for k in keys
        if hashlib.sha256(s3.get_object(Bucket=bucket, Key=k)["Body"].read()).hexdigest()
        != k.rsplit("/", 1)[1]
    ]
    missing = check_readable(tmp_path, store, extra, acked)
    record(
        "durability (s3/moto)",
        uploads=len(images),
        kills=kills,
        acknowledged=len(acked),
        partial_visible=len(partial),
        ack_missing=missing,
    )
    assert kills == KILLS
    assert 0 < len(acked) < len(images)
    assert partial == []
    assert missing == 0
    assert refused == 0
    assert {k.rsplit("/", 1)[1] for k in keys} >= acked
    assert all(
        image_id(d) in {k.rsplit("/", 1)[1] for k in keys} or image_id(d) not in acked
        for d in images
    )
