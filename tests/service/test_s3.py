"""S3Storage against a moto server that this module starts on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import boto3
import httpx
import pytest
from image_service.app import create_app
from image_service.build import build_service, build_storage
from image_service.config import Settings
from image_service.s3_storage import S3Storage, parse_s3_url
from image_service.storage import StorageError
from image_service.tenants import Tenant
from moto.server import ThreadedMotoServer
from service_testkit import BETA_KEY, Images, LiveServer, free_port
from starlette.testclient import TestClient

Tenants = dict[str, Tenant]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    name = "b-" + request.node.name.lower().replace("_", "-")[:50]
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return str(name)


def keys(endpoint: str, bucket: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://b/p/q/") == ("b", "p/q/")
    assert parse_s3_url("s3://b") == ("b", "")
    with pytest.raises(ValueError, match="names no bucket"):
        parse_s3_url("s3:///x")
    with pytest.raises(ValueError, match="not an s3"):
        parse_s3_url("/data")


def test_round_trip(moto_endpoint: str, bucket: str) -> None:
    store = S3Storage(f"s3://{bucket}/images", moto_endpoint)
    store.check()
    assert store.get("t/originals/a") is None
    assert not store.exists("t/originals/a")
    store.put("t/originals/a", b"12345", "image/png")
    assert store.get("t/originals/a") == b"12345"
    assert store.exists("t/originals/a")
    for i in range(3):
        store.put(f"t/renditions/a/{i}.img", b"x" * i, "image/png")
    assert store.usage("t/") == 5 + 0 + 1 + 2
    assert store.delete_prefix("t/renditions/a/") == 3
    assert store.delete("t/originals/a")
    assert not store.delete("t/originals/a")
    assert keys(moto_endpoint, bucket) == []


def test_unreachable_endpoint_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    store = S3Storage("s3://nowhere/x", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageError):
        store.check()
    with pytest.raises(StorageError):
        store.get("t/originals/a")


def test_missing_bucket_fails_readiness(
    moto_endpoint: str, bucket: str, settings: Settings, tenants: Tenants, images: Images
) -> None:
    store = S3Storage("s3://no-such-bucket/x", moto_endpoint)
    service = build_service(settings, tenants, store)
    auth = {"Authorization": f"Bearer {BETA_KEY}"}
    with TestClient(create_app(service)) as client:
        assert client.get("/readyz").status_code == 503
        up = client.post("/v1/beta/images", content=images.jpeg, headers=auth)
        assert up.status_code == 503
        assert up.json()["error"] == "storage_unavailable"
        assert up.headers["retry-after"] == "1"
        metrics = client.get("/metrics").text
        assert 'image_service_storage_errors_total{backend="s3",operation="check"' in metrics
        # HEAD cannot tell a missing bucket from a missing key; the quota listing then fails.
        assert 'image_service_storage_errors_total{backend="s3",operation="list"' in metrics


def test_service_on_s3(
    moto_endpoint: str, bucket: str, settings: Settings, tenants: Tenants, images: Images
) -> None:
    chosen = replace(settings, storage=f"s3://{bucket}/svc", s3_endpoint=moto_endpoint)
    service = build_service(chosen, tenants, build_storage(chosen))
    auth = {"Authorization": f"Bearer {BETA_KEY}"}
    with TestClient(create_app(service)) as client:
        assert client.get("/readyz").status_code == 200
        bad = client.post("/v1/beta/images", content=images.jpeg[:500], headers=auth)
        assert bad.status_code == 422
        assert keys(moto_endpoint, bucket) == []
        iid = client.post("/v1/beta/images", content=images.jpeg, headers=auth).json()["id"]
        first = client.get(f"/v1/beta/images/{iid}?w=40&format=png")
        assert first.status_code == 200
        assert client.get(f"/v1/beta/images/{iid}?w=40&format=png").content == first.content
        stored = keys(moto_endpoint, bucket)
        assert stored[0] == f"svc/beta/originals/{iid}"
        assert len(stored) == 2
        assert stored[1].startswith(f"svc/beta/renditions/{iid}/")
        assert client.delete(f"/v1/beta/images/{iid}", headers=auth).status_code == 204
        assert keys(moto_endpoint, bucket) == []


def test_real_server_on_s3(
    live_server: Callable[..., LiveServer], moto_endpoint: str, bucket: str, images: Images
) -> None:
    server = live_server(
        {
            "IMAGE_SERVICE_STORAGE": f"s3://{bucket}/live",
            "IMAGE_SERVICE_S3_ENDPOINT": moto_endpoint,
            "IMAGE_SERVICE_DEMO_KEY": "k",
            **CREDENTIALS,
        }
    )
    up = httpx.post(
        f"{server.url}/v1/demo/images", content=images.webp, headers={"Authorization": "Bearer k"}
    )
    assert up.status_code == 201
    got = httpx.get(f"{server.url}/v1/demo/images/{up.json()['id']}?w=50")
    assert got.headers["content-type"] == "image/webp"
    assert keys(moto_endpoint, bucket)[0] == f"live/demo/originals/{up.json()['id']}"
