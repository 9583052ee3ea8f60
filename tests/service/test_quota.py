"""The storage quota is exact under any concurrency and is rebuilt from storage at start."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pyvips
from service_testkit import BETA_KEY, App, AppFactory

AUTH = {"Authorization": f"Bearer {BETA_KEY}"}


def distinct_pngs(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        image = (pyvips.Image.gaussnoise(64, 64, mean=100 + i, sigma=30)).cast("uchar")
        out.append(bytes(image.pngsave_buffer()))
    return out


def originals_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("originals/*") if p.is_file())


def limit_quota(app: App, quota: int) -> None:
    app.service.tenants["beta"] = replace(app.service.tenants["beta"], max_stored_bytes=quota)


def together(count: int, fn: object) -> list[httpx.Response]:
    replies: list[httpx.Response] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one() -> None:
        barrier.wait()
        reply = fn()  # type: ignore[operator]
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return replies


def test_concurrent_deletes_free_the_bytes_once(make_app: AppFactory) -> None:
    app = make_app()
    kept, doomed, a, b, c = distinct_pngs(5)
    limit_quota(app, len(kept) + len(a) + len(b) + 16)
    assert app.upload(kept, tenant="beta", key=BETA_KEY).status_code == 201
    iid = app.upload(doomed, tenant="beta", key=BETA_KEY).json()["id"]
    replies = together(8, lambda: app.client.delete(f"/v1/beta/images/{iid}", headers=AUTH))
    assert sorted(r.status_code for r in replies) == [204] + [404] * 7
    # Room for exactly two more images: the third must be refused.
    statuses = [app.upload(x, tenant="beta", key=BETA_KEY).status_code for x in (a, b, c)]
    assert statuses == [201, 201, 413]
    assert originals_bytes(app.root) <= app.service.tenants["beta"].max_stored_bytes


def test_concurrent_identical_uploads_count_once(make_app: AppFactory) -> None:
    app = make_app()
    a, b = distinct_pngs(2)
    limit_quota(app, len(a) + len(b) + 16)
    replies = together(8, lambda: app.upload(a, tenant="beta", key=BETA_KEY))
    assert [r.status_code for r in replies] == [201] * 8
    assert app.upload(b, tenant="beta", key=BETA_KEY).status_code == 201
    assert originals_bytes(app.root) == len(a) + len(b)


def test_quota_is_rebuilt_from_storage_at_start(make_app: AppFactory) -> None:
    first = make_app()
    a, b = distinct_pngs(2)
    assert first.upload(a, tenant="beta", key=BETA_KEY).status_code == 201
    second = make_app()  # same storage directory, a fresh process state
    limit_quota(second, len(a) + len(b) - 1)
    over = second.upload(b, tenant="beta", key=BETA_KEY)
    assert over.status_code == 413
    assert over.json()["error"] == "storage_quota_exceeded"
    assert originals_bytes(second.root) == len(a)
