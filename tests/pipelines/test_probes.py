"""Golden probes against real image-service processes on 127.0.0.1.

Two `python -m image_service` processes (tenants file written with the shared contract, one
storage directory as in a real environment) are canary and baseline. A bad canary is the real
service behind an ASGI proxy (uvicorn in a thread) that rewrites some answers. Expectations come
from decoding what came back, never from the probe module's own constants.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pyvips
import uvicorn
from delivery import probes
from delivery.probe_corpus import build_corpus, track_corpora
from delivery.probes import (
    DEFAULT_TOLERANCE,
    Answer,
    Picture,
    ProbeReport,
    ProbeResult,
    ProbeSpec,
    ProbeTenant,
    SentRequest,
    calibrate,
    compare,
    compare_all,
    distance,
    noise_floor,
    picture_of,
    plan,
    preflight,
    run_probes,
)
from delivery.probes import main as probes_main
from delivery.procs import free_port
from image_contracts.renditions import signature
from image_contracts.tenants import TenantEntry, dump_document
from image_service.options import canonical_query, parse_options, split_query
from image_service.signing import sign as service_sign
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

TENANT = "probe"
API_KEY = "probe-key-for-tests"
SECRET = b"probe-signing-secret"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not within {timeout} s")


OPEN_TENANT = "open"
OPEN_KEY = "open-key-for-tests"


def write_tenants(path: Path) -> Path:
    signed = TenantEntry(
        id=TENANT,
        api_key_sha256=(hashlib.sha256(API_KEY.encode()).hexdigest(),),
        signing_secrets=("env:PROBE_SIGNING_SECRET",),
        allow_unsigned_reads=False,
        requests_per_second=10_000,
    )
    unsigned = TenantEntry(  # what the local environment's tenants look like
        id=OPEN_TENANT,
        api_key_sha256=(hashlib.sha256(OPEN_KEY.encode()).hexdigest(),),
        allow_unsigned_reads=True,
        requests_per_second=10_000,
    )
    path.write_text(dump_document([signed, unsigned]))
    return path


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    err: Path


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"service exited with status {process.returncode}")
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def service(tmp: Path, name: str, storage: Path, track: str) -> Iterator[Service]:
    tenants = write_tenants(tmp / f"{name}-tenants.toml")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SERVICE_")} | {
        "IMAGE_SERVICE_HOST": "127.0.0.1",
        "IMAGE_SERVICE_PORT": str(port),
        "IMAGE_SERVICE_STORAGE": str(storage),
        "IMAGE_SERVICE_TENANTS_FILE": str(tenants),
        "IMAGE_SERVICE_TRACK": track,
        "IMAGE_SERVICE_VERSION": f"test-{name}",
        "IMAGE_SERVICE_WORKERS": "1",
        "IMAGE_SERVICE_LOG_LEVEL": "warning",
        "PROBE_SIGNING_SECRET": SECRET.decode(),
    }
    err = tmp / f"{name}.err"
    with err.open("wb") as err_f:
        process = subprocess.Popen(
            [sys.executable, "-m", "image_service"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err_f,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url, process), 60, f"service {name} ready")
        yield Service(process, url, err)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


Rewrite = Callable[[Request, httpx.Response], Awaitable[Response | None]]


class Proxy:
    """Forwards every request to `upstream`; `rewrite` may replace an answer (None: keep it)."""

    def __init__(self, upstream: str, rewrite: Rewrite) -> None:
        self.upstream = upstream
        self.rewrite = rewrite
        self.rewritten: list[str] = []
        self.client: httpx.AsyncClient | None = None  # lives on the proxy's own event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.client = httpx.AsyncClient(timeout=30)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.client is not None:
                        await self.client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        assert self.client is not None
        request = Request(scope, receive)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
        upstream = await self.client.request(
            request.method,
            self.upstream
            + request.url.path
            + (f"?{request.url.query}" if request.url.query else ""),
            headers=headers,
            content=await request.body(),
        )
        replaced = await self.rewrite(request, upstream)
        if replaced is None:
            passthrough = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
            }
            replaced = Response(upstream.content, upstream.status_code, passthrough)
        else:
            self.rewritten.append(f"{request.method} {request.url.path}?{request.url.query}")
        await replaced(scope, receive, send)


@contextmanager
def proxy(upstream: str, rewrite: Rewrite) -> Iterator[tuple[str, Proxy]]:
    app = Proxy(upstream, rewrite)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        loop="asyncio",
        ws="none",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "proxy started")
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=20)


# --- fixtures ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    stable: str
    baseline: str


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("probes")
    store = tmp / "store"
    with (
        service(tmp, "stable", store, "stable") as a,
        service(tmp, "baseline", store, "baseline") as b,
    ):
        yield Pair(a.url, b.url)


PROBE_TENANT = ProbeTenant(TENANT, API_KEY, SECRET, allow_unsigned_reads=False)


def _run(canary: str, baseline: str, specs: Sequence[ProbeSpec] | None = None) -> ProbeReport:
    results = run_probes(canary, baseline, PROBE_TENANT, run_id=uuid.uuid4().hex, specs=specs)
    return compare_all(results)


def _decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


# --- identical versions ------------------------------------------------------------------------
def test_identical_versions_pass_and_cover_what_users_send(pair: Pair) -> None:
    report, tolerance = preflight(pair.stable, pair.baseline, PROBE_TENANT, run_id="preflight")
    assert report.passed, report.text()
    answers = [a for c in report.comparisons for a in (c.result.canary, c.result.baseline)]
    # Coverage read from what the services answered, not from the plan.
    statuses = {a.status for a in answers}
    assert {200, 201, 204, 304, 400, 401, 403, 404, 415, 422} <= statuses
    pictures = [a.picture for a in answers if a.picture is not None]
    assert {p.format for p in pictures} >= {"jpeg", "png", "webp", "gif", "avif"}
    assert any(p.frames > 1 for p in pictures)
    assert any(p.alpha for p in pictures)
    uploads = [c.result for c in report.comparisons if c.result.spec.method == "POST"]
    formats = {dict(r.canary.fields).get("format") for r in uploads if r.canary.status == 201}
    assert formats >= {"jpeg", "png", "webp", "gif", "avif"}
    # The noise floor between two identical versions sits inside the default bound.
    floor = noise_floor(c.result for c in report.comparisons)
    assert floor.mean < DEFAULT_TOLERANCE.mean
    assert floor.max < DEFAULT_TOLERANCE.max
    assert calibrate(floor) == DEFAULT_TOLERANCE == tolerance


def test_a_tenant_with_unsigned_reads_is_probed_unsigned(pair: Pair) -> None:
    tenant = ProbeTenant(OPEN_TENANT, OPEN_KEY)
    specs = [s for s in plan(tenant) if s.method == "POST" or s.image == "png"]
    assert not any(s.name.startswith("signature") for s in plan(tenant))
    results = run_probes(pair.stable, pair.baseline, tenant, run_id=uuid.uuid4().hex, specs=specs)
    report = compare_all(results)
    assert report.passed, report.text()
    reads = [r for r in results if r.spec.method == "GET"]
    assert reads
    assert all(r.canary.status == 200 for r in reads)
    assert not any("sig=" in r.canary_request.url for r in reads)


def test_the_command_line_exits_1_and_says_why(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROBE_KEY_FOR_TEST", API_KEY)
    monkeypatch.setenv("PROBE_SECRET_FOR_TEST", SECRET.decode())
    dead = f"http://127.0.0.1:{free_port()}"
    argv = ["--canary", dead, "--baseline", pair.baseline, "--tenant", TENANT]
    argv += ["--key-env", "PROBE_KEY_FOR_TEST", "--secret-env", "PROBE_SECRET_FOR_TEST"]
    assert probes_main(argv) == 1
    out = capsys.readouterr().out
    assert "golden probes differ" in out
    assert "canary gave no answer" in out
    assert API_KEY not in out  # the key never reaches the output


# --- bad canaries ------------------------------------------------------------------------------
def _encode_like(image: pyvips.Image, original: bytes) -> bytes:
    loader = str(_decode(original).get("vips-loader"))
    suffix = {"jpegload_buffer": ".jpg", "pngload_buffer": ".png", "webpload_buffer": ".webp"}
    return bytes(image.write_to_buffer(suffix.get(loader, ".png")))


def _kept_headers(answer: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}


def test_wrong_size_rendition_with_200_fails(pair: Pair) -> None:
    async def shrink(request: Request, answer: httpx.Response) -> Response | None:
        # One rendition, 200 OK, same headers: 10 % narrower than asked.
        if request.method != "GET" or answer.status_code != 200:
            return None
        if not request.url.query.startswith("w=50&sig="):
            return None
        image = _decode(answer.content)
        smaller = image.resize(0.9)
        return Response(_encode_like(smaller, answer.content), 200, _kept_headers(answer))

    with proxy(pair.stable, shrink) as (canary, bad):
        report = _run(canary, pair.baseline)
    assert bad.rewritten, "the fault never fired"
    assert not report.passed
    failed = {c.result.spec.name for c in report.failures}
    for c in report.comparisons:
        cp, bp = c.result.canary.picture, c.result.baseline.picture
        if cp is not None and bp is not None and (cp.width, cp.height) != (bp.width, bp.height):
            assert c.result.spec.name in failed
            assert not c.passed
    # Exactly the rewritten answers fail: every other probe still matches.
    assert len(report.failures) == len(bad.rewritten)
    text = report.text()
    assert "width" in text
    assert "canary:" in text
    assert "baseline:" in text


def test_mirrored_pixels_at_the_right_size_fail(pair: Pair) -> None:
    async def mirror(request: Request, answer: httpx.Response) -> Response | None:
        if request.method != "GET" or answer.status_code != 200:
            return None
        if "gravity=east" not in request.url.query:
            return None
        flipped = _decode(answer.content).fliphor()
        return Response(_encode_like(flipped, answer.content), 200, _kept_headers(answer))

    with proxy(pair.stable, mirror) as (canary, bad):
        specs = [s for s in plan(PROBE_TENANT) if s.method == "POST" or "gravity" in s.query]
        report = _run(canary, pair.baseline, specs)
    assert bad.rewritten
    assert not report.passed
    for c in report.failures:
        cp, bp = c.result.canary.picture, c.result.baseline.picture
        assert cp is not None
        assert bp is not None
        assert (cp.width, cp.height) == (bp.width, bp.height)
        assert any("pixels differ" in d for d in c.differences), c.explain()


def test_failing_uploads_fail(pair: Pair) -> None:
    async def refuse(request: Request, answer: httpx.Response) -> Response | None:
        if request.method == "POST":
            return JSONResponse({"error": "internal_error", "detail": "x"}, 500)
        return None

    specs = [s for s in plan(PROBE_TENANT) if s.method == "POST" or s.query == "w=50"]
    with proxy(pair.stable, refuse) as (canary, _):
        report = _run(canary, pair.baseline, specs)
    assert not report.passed
    uploads = [c for c in report.comparisons if c.result.spec.name.startswith("upload ")]
    assert uploads
    assert all(not c.passed for c in uploads)
    assert all(c.result.canary.status == 500 for c in uploads)
    assert "upload" in report.reason()


def test_a_dead_canary_fails_with_no_answer(pair: Pair) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    specs = plan(PROBE_TENANT)[:2]
    report = _run(dead, pair.baseline, specs)
    assert not report.passed
    assert all("canary gave no answer" in c.differences[0] for c in report.failures)


# --- the pure core -----------------------------------------------------------------------------
def _pattern() -> pyvips.Image:
    corpus = {i.name: i for i in build_corpus("pure")}
    return _decode(corpus["png"].data)


def _result(canary: bytes, baseline: bytes) -> ProbeResult:
    sent = SentRequest("GET", "/v1/t/images/x?w=1")
    spec = ProbeSpec("p", "GET", "x", "w=1")

    def answer(data: bytes) -> Answer:
        return Answer(200, (("content-type", "image/jpeg"),), picture=picture_of(data))

    return ProbeResult(spec, sent, answer(canary), sent, answer(baseline))


def test_an_encoder_change_passes() -> None:
    image = _pattern()
    report = compare(
        _result(bytes(image.jpegsave_buffer(Q=95)), bytes(image.jpegsave_buffer(Q=55)))
    )
    assert report.passed, report.explain()
    assert report.distance is not None
    assert report.distance.mean > 0  # the bytes and pixels really differ


@pytest.mark.parametrize(
    "damage",
    [
        lambda im: im.fliphor(),
        lambda im: im.bandjoin([])[2].bandjoin([im[1], im[0]]),  # red and blue swapped
        lambda im: im.crop(20, 0, im.width - 20, im.height).resize(
            im.width / (im.width - 20), vscale=1.0
        ),  # wrong crop, right size
    ],
    ids=["mirrored", "channels-swapped", "wrong-crop"],
)
def test_wrong_pixels_at_the_right_size_fail(
    damage: Callable[[pyvips.Image], pyvips.Image],
) -> None:
    image = _pattern()
    bad = damage(image).cast("uchar").copy(interpretation="srgb")
    assert (bad.width, bad.height) == (image.width, image.height)
    verdict = compare(_result(bytes(bad.jpegsave_buffer(Q=90)), bytes(image.jpegsave_buffer(Q=90))))
    assert not verdict.passed
    assert any("pixels differ" in d for d in verdict.differences)


def test_differences_in_status_error_and_headers_are_named() -> None:
    sent = SentRequest("GET", "/v1/t/images/x")
    spec = ProbeSpec("p", "GET", "x")
    canary = Answer(200, (("cache-control", "cacheable"),), None)
    baseline = Answer(404, (("cache-control", "no-store"),), "not_found")
    verdict = compare(ProbeResult(spec, sent, canary, sent, baseline))
    assert not verdict.passed
    text = verdict.explain()
    assert "status 200 != 404" in text
    assert "cache-control cacheable != no-store" in text
    assert "error None != not_found" in text


def test_probe_signatures_and_queries_are_what_the_service_accepts() -> None:
    """Every probe query is already canonical, and its signature is the service's."""
    for spec in plan(PROBE_TENANT):
        if spec.method not in ("GET", "HEAD") or spec.name.startswith("error"):
            continue
        options, sig = parse_options(split_query(spec.query), 8192)
        assert sig is None
        assert canonical_query(options) == spec.query, spec.name
        expected = service_sign(SECRET, TENANT, "a" * 64, options)
        assert signature(SECRET, TENANT, "a" * 64, spec.query) == expected


def test_track_corpora_never_share_an_upload() -> None:
    corpora = track_corpora("some-run")
    canary = {i.sha256 for i in corpora["canary"]}
    baseline = {i.sha256 for i in corpora["baseline"]}
    assert len(canary) == len(corpora["canary"])
    assert not canary & baseline
    for a, b in zip(corpora["canary"], corpora["baseline"], strict=True):
        da, db = _decode(a.data), _decode(b.data)
        assert (da.width, da.height, da.bands) == (db.width, db.height, db.bands)


def test_metadata_salts_leave_the_pixels_alone() -> None:
    """What keeps smart crops stable across tracks: only GIFs differ in pixels."""
    corpora = track_corpora("pixels")
    for a, b in zip(corpora["canary"], corpora["baseline"], strict=True):
        da, db = _decode(a.data), _decode(b.data)
        same = (da - db).abs().max() == 0
        assert same == (a.format != "gif"), a.name


def test_distance_and_psnr_of_known_thumbnails() -> None:
    def pic(values: bytes) -> Picture:
        return Picture("png", 2, 2, 1, False, values, (2, 2))

    same = distance(pic(bytes(4)), pic(bytes(4)))
    assert same is not None
    assert same.psnr == math.inf
    one_off = distance(pic(bytes([0, 0, 0, 255])), pic(bytes(4)))
    assert one_off is not None
    assert (one_off.mean, one_off.max) == (255 / 4, 255.0)
    assert one_off.psnr == pytest.approx(20 * math.log10(255 / math.sqrt(255**2 / 4)))
    assert distance(pic(bytes(4)), Picture("png", 4, 1, 1, False, bytes(4), (4, 1))) is None


def _shedding_track(refusals: int, retry_after: str | None) -> tuple[httpx.Client, list[int]]:
    """A track that sheds its first `refusals` requests with 503, then answers."""
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= refusals:
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            return httpx.Response(503, headers=headers, json={"error": "tenant_overloaded"})
        return httpx.Response(204)

    return httpx.Client(transport=httpx.MockTransport(handle)), calls


def _delete_probe() -> ProbeSpec:
    return ProbeSpec("delete", "DELETE", image="gone")


def test_a_probe_asks_again_when_the_track_sheds_load_with_retry_after() -> None:
    client, calls = _shedding_track(refusals=2, retry_after="0")
    tenant = ProbeTenant("acme", "key")
    _, answer = probes.execute(client, "http://track", tenant, {}, _delete_probe(), {})
    assert answer.status == 204  # overload said "later" (RFC 9110), and later it answered
    assert len(calls) == 3


def test_a_503_without_retry_after_is_an_answer_not_shedding() -> None:
    client, calls = _shedding_track(refusals=5, retry_after=None)
    _, answer = probes.execute(client, "http://track", ProbeTenant("acme", "key"), {},
                               _delete_probe(), {})  # fmt: skip
    assert (answer.status, len(calls)) == (503, 1)


def test_a_track_that_keeps_shedding_is_compared_as_it_answered_after_a_bounded_wait() -> None:
    client, calls = _shedding_track(refusals=1000, retry_after="0")
    _, answer = probes.execute(client, "http://track", ProbeTenant("acme", "key"), {},
                               _delete_probe(), {})  # fmt: skip
    assert answer.status == 503
    assert 1 < len(calls) < 10
