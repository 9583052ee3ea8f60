"""The synthetic traffic generator's own logic: its seed image, loopback only, bounded options."""

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
import pyvips
from delivery import traffic
from image_service.options import parse_options
from image_service.signing import verify


def test_the_seed_image_is_a_png_libvips_decodes() -> None:
    image = pyvips.Image.new_from_buffer(traffic.tiny_png(96, 64), "")
    assert (image.width, image.height, image.bands) == (96, 64, 3)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:80", "http://example.com", "http://0.0.0.0:8000", "file:///etc"]
)
def test_only_a_loopback_gateway_is_accepted(url: str) -> None:
    with pytest.raises(SystemExit, match="refusing non-loopback"):
        traffic.check_loopback(url)
    traffic.check_loopback("http://127.0.0.1:8000")


def test_stats_are_rewritten_whole(tmp_path: Path) -> None:
    stats = traffic.Stats(tmp_path / "traffic.json")
    for code in ("200", "200", "503"):
        stats.add("acme", code)
    stats.flush()
    doc = json.loads((tmp_path / "traffic.json").read_text())
    assert doc["counts"] == {"acme": {"200": 2, "503": 1}}
    assert not (tmp_path / "traffic.tmp").exists()


@pytest.mark.parametrize("extra", [["--rps", "501"], ["--rps", "0"], ["--max-seconds", "90000"]])
def test_unbounded_load_is_refused(tmp_path: Path, extra: list[str]) -> None:
    argv = ["--gateway", "http://127.0.0.1:9", "--tenants", "t.json", "--stats", "s.json", *extra]
    done = subprocess.run(
        [sys.executable, "-m", "delivery.traffic", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "must be in" in done.stderr


def test_the_mix_covers_every_route_and_cold_renders_differ_per_run() -> None:
    def plans(seed: int, n: int = 2000) -> list[traffic.Plan]:
        rng = random.Random(seed)
        own: list[str] = []
        etags: dict[str, str] = {}
        out = []
        for _ in range(n):
            plan = traffic.choose(rng, "acme", "k", "img", own, etags)
            out.append(plan)
            if plan.kind == "upload":
                own.append(f"up{len(out)}")
            if plan.kind == "read":
                etags[plan.path] = '"e"'
        return out

    first = plans(1)
    kinds = Counter(p.kind for p in first)
    assert set(kinds) == {"read", "cold", "conditional", "upload", "delete"}
    assert {p.method for p in first} == {"GET", "POST", "DELETE"}
    writes = [p for p in first if p.method != "GET"]
    assert all(("Authorization", "Bearer k") in p.headers for p in writes)
    assert all(p.headers[0][0] == "If-None-Match" for p in first if p.kind == "conditional")
    cold = {p.path for p in first if p.kind == "cold"}
    again = {p.path for p in plans(2) if p.kind == "cold"}
    assert len(cold & again) < 0.05 * len(cold)  # another run renders other options
    bodies = {traffic.variant_png(p.body_seed or 0) for p in first if p.kind == "upload"}
    assert len(bodies) > 0.9 * kinds["upload"]  # each upload is a new image


def test_a_restarted_generator_continues_the_counts_and_its_seeds(tmp_path: Path) -> None:
    path = tmp_path / "traffic.json"
    first = traffic.Stats(path)
    first.add("acme", "200")
    first.seeds = {"acme": "img-1"}
    first.flush()
    again = traffic.Stats(path)  # what a restarted generator reads
    again.add("acme", "200")
    again.flush()
    doc = json.loads(path.read_text())
    assert doc["counts"] == {"acme": {"200": 2}}  # monotonic: differences span the restart
    assert doc["seeds"] == {"acme": "img-1"}


def test_a_corrupt_stats_file_starts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "traffic.json"
    path.write_text("{not json")
    assert traffic.Stats(path).counts == {}


def test_seeds_are_reused_and_a_refusing_tenant_does_not_stop_the_others() -> None:
    posts: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        tenant = request.url.path.split("/")[2]
        if request.method == "GET":  # only acme's previous seed still reads
            ok = request.url.path.endswith("/images/old-acme")
            return httpx.Response(200 if ok else 404)
        posts.append(tenant)
        if tenant == "full":  # at its quota: the service refuses every upload
            return httpx.Response(413, json={"error": "quota"})
        return httpx.Response(201, json={"id": f"new-{tenant}"})

    tenants = [{"id": t, "key": "k"} for t in ("acme", "globex", "full")]
    known = {"acme": "old-acme", "globex": "gone"}
    with httpx.Client(transport=httpx.MockTransport(gateway)) as client:
        images = traffic.seed_images(client, "http://gw", tenants, known, patience=0.2)
    assert images == {"acme": "old-acme", "globex": "new-globex"}
    assert "acme" not in posts  # reused, not uploaded again


def test_signed_reads_verify_with_the_services_own_rule_and_unsigned_ones_remain() -> None:
    secret = b"s3cret"
    rng = random.Random(7)
    reads = [traffic.choose(rng, "acme", "k", "img", [], {}, secret) for _ in range(600)]
    gets = [p for p in reads if p.method == "GET" and p.kind in ("read", "cold")]
    signed = [p for p in gets if "sig=" in p.path]
    assert 0.3 < len(signed) / len(gets) < 0.7  # both kinds, in a realistic mix
    for plan in signed:
        pairs = [
            (k, v) for k, _, v in (kv.partition("=") for kv in plan.path.split("?")[1].split("&"))
        ]
        options, sig = parse_options(pairs, 4096)  # the service's own parser
        assert sig is not None
        assert verify((secret,), "acme", "img", options, sig), plan.path
        assert not verify((b"other",), "acme", "img", options, sig)


def test_an_answer_not_shaped_as_documented_is_counted_and_the_worker_goes_on(
    tmp_path: Path,
) -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, text="not json")  # an upload "accepted" without an id

    stats = traffic.Stats(tmp_path / "traffic.json")
    own: dict[str, list[str]] = {"acme": []}
    plan = traffic.Plan("upload", "POST", "/v1/acme/images", (), 1)
    with httpx.Client(transport=httpx.MockTransport(gateway)) as client:
        for _ in range(3):
            traffic.send(client, "http://gw", "acme", plan, stats, own, {"acme": {}})
    assert stats.counts == {"acme": {"201": 3}}
    assert own == {"acme": []}


def test_a_request_the_client_cannot_send_is_counted_not_raised(tmp_path: Path) -> None:
    stats = traffic.Stats(tmp_path / "traffic.json")
    plan = traffic.Plan("read", "GET", "/v1/acme/images/x?w=16")
    with httpx.Client() as client:  # "no-such-scheme://" is refused by httpx before any I/O
        traffic.send(client, "no-such-scheme://gw", "acme", plan, stats, {}, {})
    assert sum(stats.counts["acme"].values()) == 1


def test_no_upload_is_the_seed_image_so_deleting_ones_own_never_removes_it() -> None:
    seed = traffic.tiny_png()
    assert all(traffic.variant_png(n) != seed for n in range(5000))
