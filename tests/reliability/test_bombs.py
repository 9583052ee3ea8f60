"""The bomb corpus against a real server: refused with a 4xx, quickly, without growing memory.

Time is measured client-side over a kept-alive connection; memory as the growth of the server's
peak RSS (VmHWM) across the request. The targets (<100 ms, <50 MB) are checked by the benchmark
(bench/reliability/run.sh); here the bounds are generous sanity limits so CI does not flake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import bombs
import httpx
import pytest
from reliability_kit import ALPHA_KEY, Proc, Starter, auth, in_process, record, stored_files

SANITY_SECONDS = 5.0
SANITY_MB = 200.0


def measure(client: httpx.Client, proc: Proc, data: bytes) -> tuple[httpx.Response, float, float]:
    before = proc.rss_kib("VmHWM")
    started = time.perf_counter()
    reply = client.post("/v1/alpha/images", content=data, headers=auth(ALPHA_KEY))
    elapsed_ms = (time.perf_counter() - started) * 1000
    return reply, elapsed_ms, (proc.rss_kib("VmHWM") - before) / 1024


def warm(client: httpx.Client) -> None:
    # One ordinary upload first, so libvips' one-off start-up cost is not charged to a bomb.
    reply = client.post("/v1/alpha/images", content=bombs.small_jpeg(), headers=auth(ALPHA_KEY))
    assert reply.status_code == 201


def test_header_bombs_are_refused(service: Starter) -> None:
    proc = service("bombs")
    store = Path(proc.env["IMAGE_SERVICE_STORAGE"])
    with httpx.Client(base_url=proc.url, timeout=60) as client:
        warm(client)
        before = stored_files(store)
        for name, (build, error) in bombs.HEADER_BOMBS.items():
            data = build()
            reply, ms, grown = measure(client, proc, data)
            record(
                "bomb",
                case=name,
                bytes=len(data),
                status=reply.status_code,
                ms=round(ms, 1),
                rss_growth_mb=round(grown, 1),
            )
            assert reply.status_code == 422, (name, reply.text)
            assert reply.json()["error"] == error, name
            assert ms < SANITY_SECONDS * 1000, name
            assert grown < SANITY_MB, name
        assert stored_files(store) == before
        assert client.get("/healthz").status_code == 200


def test_hostile_structure_is_cheap_and_never_a_5xx(service: Starter) -> None:
    proc = service("oddities")
    with httpx.Client(base_url=proc.url, timeout=60) as client:
        warm(client)
        cases: dict[str, Callable[[], bytes]] = {**bombs.ODDITIES, **bombs.METADATA_BOMBS}
        for name, build in cases.items():
            data = build()
            reply, ms, grown = measure(client, proc, data)
            record(
                "hostile metadata",
                case=name,
                bytes=len(data),
                status=reply.status_code,
                ms=round(ms, 1),
                rss_growth_mb=round(grown, 1),
            )
            assert reply.status_code in (201, 413, 415, 422), (name, reply.text)
            assert ms < SANITY_SECONDS * 1000, name
            assert grown < SANITY_MB, name
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("name", list(bombs.METADATA_BOMBS))
def test_oversized_metadata_is_refused(tmp_path: Path, name: str) -> None:
    with in_process(tmp_path / "store") as client:
        data = bombs.METADATA_BOMBS[name]()
        reply = client.post("/v1/alpha/images", content=data, headers=auth(ALPHA_KEY))
        assert 400 <= reply.status_code < 500, (name, reply.status_code)
