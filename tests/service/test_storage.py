"""Storage backends: atomic writes, no partial objects, and an interrupted upload over HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from image_service.local_storage import TEMP_PREFIX, LocalStorage
from image_service.storage import StorageError
from image_service.transform import render
from service_testkit import BETA_KEY, App, Images, LiveServer


def test_local_round_trip(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.put("t/originals/abc", b"data", "image/png")
    assert store.get("t/originals/abc") == b"data"
    assert store.exists("t/originals/abc")
    assert store.usage("t/") == 4
    store.put("t/renditions/abc/1.img", b"xx", "image/png")
    store.put("t/renditions/abc/2.img", b"yy", "image/png")
    assert store.delete_prefix("t/renditions/abc/") == 2
    assert store.get("t/renditions/abc/1.img") is None
    assert store.delete("t/originals/abc")
    assert not store.delete("t/originals/abc")
    assert store.get("t/originals/abc") is None
    store.check()


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 2**20 + 7])
def test_local_reads_back_every_byte(tmp_path: Path, size: int) -> None:
    data = bytes(i * 7 % 251 for i in range(size))
    storage = LocalStorage(tmp_path)
    storage.put("t/renditions/x/y.img", data, "image/jpeg")
    assert storage.get("t/renditions/x/y.img") == data


@pytest.mark.parametrize("key", ["../x", "t/../../etc/passwd", "/abs", "t//x", "T/x", ""])
def test_local_refuses_unsafe_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).put(key, b"x", "image/png")


def test_failed_rename_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStorage(tmp_path)

    def broken_replace(self: Path, target: Path) -> Path:
        raise OSError("disk on fire")

    monkeypatch.setattr(Path, "replace", broken_replace)
    with pytest.raises(StorageError, match="disk on fire"):
        store.put("t/originals/abc", b"data", "image/png")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_killed_writer_leaves_no_visible_object(tmp_path: Path) -> None:
    # What a process killed between write and rename leaves behind: a temporary file only.
    store = LocalStorage(tmp_path)
    (tmp_path / "t" / "originals").mkdir(parents=True)
    (tmp_path / "t" / "originals" / f"{TEMP_PREFIX}abc").write_bytes(b"half")
    assert store.get("t/originals/abc") is None
    assert not store.exists("t/originals/abc")
    assert store.usage("t/") == 0


def test_interrupted_upload_leaves_no_partial_object(
    live_server: Callable[..., LiveServer], images: Images, tmp_path: Path
) -> None:
    server = live_server({"IMAGE_SERVICE_DEMO_KEY": "k"})
    port = int(server.url.rsplit(":", 1)[1])
    head = (
        "POST /v1/demo/images HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Authorization: Bearer k\r\n"
        f"Content-Length: {len(images.jpeg)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(head + images.jpeg[: len(images.jpeg) // 2])
        time.sleep(0.3)
    time.sleep(0.5)
    store = tmp_path / "server-store"
    assert [p for p in store.rglob("*") if p.is_file()] == []
    # The server is unharmed and the full upload still works.
    ok = httpx.post(
        f"{server.url}/v1/demo/images", content=images.jpeg, headers={"Authorization": "Bearer k"}
    )
    assert ok.status_code == 201
    assert len([p for p in store.rglob("*") if p.is_file()]) == 1


def test_a_local_original_reaches_the_renderer_as_its_file(
    make_app: Callable[..., App], images: Images
) -> None:
    given: list[object] = []

    def recording(*args: Any) -> Any:
        given.append(args[0])
        return render(*args)

    app = make_app(render=recording)
    iid = app.upload(images.jpeg, tenant="beta", key=BETA_KEY).json()["id"]
    assert app.client.get(f"/v1/beta/images/{iid}?w=40").status_code == 200
    assert len(given) == 1
    assert isinstance(given[0], Path)
    assert given[0].read_bytes() == images.jpeg


def test_an_original_deleted_during_its_render_is_not_found(
    make_app: Callable[..., App], images: Images, caplog: pytest.LogCaptureFixture
) -> None:
    def deleting(*args: Any) -> Any:
        args[0].unlink()  # the DELETE wins the race while the render starts
        return render(*args)

    app = make_app(render=deleting)
    iid = app.upload(images.jpeg, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.get(f"/v1/beta/images/{iid}?w=40")
    assert reply.status_code == 404
    assert reply.json()["error"] == "not_found"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
