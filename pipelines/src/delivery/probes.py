"""Golden probes: the same fixed requests sent to canary and baseline directly, answers compared.

A user sees content, not metrics: a canary that answers 200 quickly with images of the wrong
size, or refuses every upload while reads still work, looks healthy to the statistical judge.
The probes look at what comes back. Canary is compared with baseline, not with stored files:

- exactly: status, error code, the headers that matter (type, Vary, cacheability, ETag form),
  an upload's reported facts, and a decoded image's format, size, frame count and alpha;
- within a bound: pixels, as the mean and maximum absolute difference of a small RGB thumbnail
  (alpha flattened onto grey), so a new encoder or quality tweak passes and a wrong crop, a
  mirrored or recoloured image does not. The bound starts from `DEFAULT_TOLERANCE` and is
  widened by `calibrate()` from the noise floor: stable compared with baseline.

Functional core: `plan()`, `compare()`, `compare_all()`, `calibrate()` are pure. The imperative
shell is `run_probes()` (HTTP with httpx) and `picture_of()` (libvips decode). Each track gets its
own salted corpus (`probe_corpus`), so canary and baseline never share a stored rendition and
every run renders cold.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pyvips
from image_contracts.renditions import GRAVITIES, OUTPUT_FORMATS, signature

from delivery.probe_corpus import DELETABLE, NAMES, CorpusImage, track_corpora

MISSING_ID = "0" * 64
THUMB = 24  # thumbnail edge per frame, pixels
_LOADER_FORMATS = {
    "jpegload_buffer": "jpeg",
    "pngload_buffer": "png",
    "webpload_buffer": "webp",
    "gifload_buffer": "gif",
    "heifload_buffer": "heif",
}


# --- what is sent ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeSpec:
    """One golden request, independent of the track it goes to.

    `image` names the corpus image whose id goes into the path (each track has its own salted
    copy, hence its own id), or `MISSING_ID`-style specials; `query` is written in the service's
    canonical order so that it can be signed as is; `body` names the corpus image to upload, or
    "garbage"/"empty".
    """

    name: str
    method: str
    image: str | None = None
    query: str = ""
    sign: str = "auto"  # auto: sign when a secret is known; "none": never; "bad": a wrong one
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    auth: str = "key"  # key | none | wrong
    tenant: str | None = None  # None: the probe tenant
    etag_from: str | None = None  # If-None-Match: the ETag this track gave for that probe


@dataclass(frozen=True)
class ProbeTenant:
    """The tenant the probes act as. Without `signing_secret`, reads go unsigned (and the
    tenant must allow it); with it, every read is signed and the signature probes run."""

    id: str
    api_key: str
    signing_secret: bytes | None = None
    allow_unsigned_reads: bool = True


RENDITIONS_EVERY_IMAGE = (
    "",
    "w=50",
    "w=40&h=40&fit=cover",
    "w=40&h=40&fit=contain&format=png",
    "w=30&h=50&fit=fill&format=webp",
    "w=40&h=40&fit=outside",
)


def _cover(gravity: str, box: str) -> str:
    return f"{box}&fit=cover" + ("" if gravity == "center" else f"&gravity={gravity}")


def plan(tenant: ProbeTenant, images: Sequence[str] = NAMES) -> tuple[ProbeSpec, ...]:
    """The fixed probe set, in the order it runs (uploads before the reads that need them)."""
    specs: list[ProbeSpec] = [
        ProbeSpec(f"upload {name}", "POST", body=name) for name in (*images, DELETABLE)
    ]
    for name in images:
        specs += [ProbeSpec(f"render {name} ?{q}", "GET", name, q) for q in RENDITIONS_EVERY_IMAGE]
    main = images[0]
    specs += [
        ProbeSpec(f"gravity {g} ?{q}", "GET", main, q)
        for g in GRAVITIES
        for q in (_cover(g, "w=40&h=60"), _cover(g, "w=100&h=30"))
    ]
    specs += [ProbeSpec(f"format {f}", "GET", main, f"w=60&format={f}") for f in OUTPUT_FORMATS]
    specs += [
        ProbeSpec(
            f"format auto, Accept {accept or '(none)'}",
            "GET",
            main,
            "w=60&format=auto",
            headers=(("Accept", accept),) if accept else (),
        )
        for accept in ("image/avif,image/webp,*/*", "image/avif,*/*", "image/jpeg", "")
    ]
    specs += [
        ProbeSpec(f"dpr ?{q}", "GET", main, q)
        for q in ("w=40&dpr=1.5", "w=40&h=40&fit=cover&dpr=2", "w=30&dpr=3.25", "w=60&q=30")
    ]
    specs += [
        ProbeSpec(f"render {n} ?{q}", "GET", n, q)
        for n, q in (
            ("gif-animated", "w=60&format=webp"),
            ("gif-animated", "w=60&format=jpeg"),
            ("webp-animated", "w=50&h=50&fit=cover&format=gif"),
            ("png-alpha", "w=60&format=jpeg"),
            ("png-alpha", "w=60&format=avif"),
            ("jpeg-cmyk", "w=60&format=png"),
            ("jpeg-exif6", "w=40&h=40&fit=cover&gravity=north"),
        )
        if n in images
    ]
    specs += [
        ProbeSpec("HEAD rendition", "HEAD", main, "w=50"),
        ProbeSpec("conditional, own ETag", "GET", main, "w=50", etag_from=f"render {main} ?w=50"),
        ProbeSpec(
            "conditional, other ETag", "GET", main, "w=50", headers=(("If-None-Match", '"x"'),)
        ),
        ProbeSpec("error: unknown option", "GET", main, "w=50&zoom=2"),
        ProbeSpec("error: duplicate option", "GET", main, "w=10&w=20"),
        ProbeSpec("error: zero width", "GET", main, "w=0"),
        ProbeSpec("error: unknown fit", "GET", main, "w=10&h=10&fit=sideways"),
        ProbeSpec("error: output too large", "GET", main, "w=100000"),
        ProbeSpec("error: unknown image", "GET", MISSING_ID, "w=50"),
        ProbeSpec("error: unknown tenant", "GET", main, "w=50", tenant="no-such-tenant-probe"),
        ProbeSpec("error: upload without key", "POST", body=main, auth="none"),
        ProbeSpec("error: upload wrong key", "POST", body=main, auth="wrong"),
        ProbeSpec("error: upload not an image", "POST", body="garbage"),
        ProbeSpec("error: upload empty body", "POST", body="empty"),
        ProbeSpec("error: delete without key", "DELETE", DELETABLE, auth="none"),
    ]
    if tenant.signing_secret is not None:
        specs.append(ProbeSpec("signature: wrong", "GET", main, "w=50", sign="bad"))
        if not tenant.allow_unsigned_reads:
            specs.append(ProbeSpec("signature: missing", "GET", main, "w=50", sign="none"))
    specs += [
        ProbeSpec("delete: read before", "GET", DELETABLE, "w=20"),
        ProbeSpec("delete", "DELETE", DELETABLE),
        ProbeSpec("delete: read after", "GET", DELETABLE, "w=20"),
        ProbeSpec("delete: again", "DELETE", DELETABLE),
    ]
    return tuple(specs)


# --- what comes back ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Picture:
    """A decoded image reduced to what is compared."""

    format: str
    width: int
    height: int  # of one frame
    frames: int
    alpha: bool
    thumb: bytes = field(repr=False)  # RGB, THUMB wide, THUMB per frame high
    thumb_shape: tuple[int, int]

    def describe(self) -> str:
        frames = f", {self.frames} frames" if self.frames != 1 else ""
        alpha = ", alpha" if self.alpha else ""
        return f"{self.format} {self.width}x{self.height}{frames}{alpha}"


@dataclass(frozen=True)
class SentRequest:
    method: str
    url: str  # path and query as sent
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""  # a description: "png-alpha (31020 bytes)"

    def describe(self) -> str:
        extra = "".join(f" [{k}: {v}]" for k, v in self.headers if k.lower() != "authorization")
        body = f" body={self.body}" if self.body else ""
        return f"{self.method} {self.url}{extra}{body}"


@dataclass(frozen=True)
class Answer:
    """What one track answered, normalised to the facts that must match."""

    status: int  # 0: no HTTP answer at all
    headers: tuple[tuple[str, str], ...] = ()
    error: str | None = None  # JSON error code, or the transport failure
    fields: tuple[tuple[str, str], ...] = ()  # an upload's reported facts
    picture: Picture | None = None
    etag: str | None = None  # kept for conditional probes; not compared

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer ({self.error})"
        parts = [str(self.status)]
        parts += [f"{k}={v}" for k, v in self.headers]
        if self.error:
            parts.append(f"error={self.error}")
        parts += [f"{k}={v}" for k, v in self.fields]
        if self.picture is not None:
            parts.append(self.picture.describe())
        return " ".join(parts)


@dataclass(frozen=True)
class ProbeResult:
    """One probe on both tracks: what each was sent and what each answered."""

    spec: ProbeSpec
    canary_request: SentRequest
    canary: Answer
    baseline_request: SentRequest
    baseline: Answer


def _format_of(image: pyvips.Image) -> str:
    loader = str(image.get("vips-loader")) if image.get_typeof("vips-loader") else ""
    fmt = _LOADER_FORMATS.get(loader, loader or "unknown")
    if fmt == "heif" and image.get_typeof("heif-compression"):
        return "avif" if image.get("heif-compression") == "av1" else "heif"
    return fmt


def picture_of(data: bytes) -> Picture | None:
    """Decode every frame and reduce it; None when the bytes are not an image libvips reads."""
    try:
        first = pyvips.Image.new_from_buffer(data, "")
        frames = int(first.get("n-pages")) if first.get_typeof("n-pages") else 1
        image = first
        if frames > 1:
            image = pyvips.Image.new_from_buffer(data, "", n=-1)
        fmt = _format_of(first)
        page_height = image.get_page_height()
        if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
            image = image.colourspace("srgb")
        alpha = image.hasalpha()
        if alpha:
            image = image.flatten(background=[128])
        if image.bands == 1:
            image = image.bandjoin([image, image])
        image = image[0:3] if image.bands > 3 else image
        shown_frames = image.height // page_height
        small = image.resize(
            THUMB / image.width, vscale=THUMB * shown_frames / image.height, kernel="linear"
        ).cast("uchar")
        shape = (small.width, small.height)
        thumb = bytes(small.write_to_memory())
    except pyvips.Error:
        return None
    return Picture(fmt, first.width, page_height, frames, alpha, thumb, shape)


# --- the comparison (pure) ---------------------------------------------------------------------
@dataclass(frozen=True)
class Distance:
    """How far two thumbnails are apart, in 8-bit levels."""

    mean: float
    max: float
    rmse: float = 0.0

    @property
    def psnr(self) -> float:
        """Peak signal-to-noise ratio of the thumbnails, in dB (inf when identical)."""
        return math.inf if self.rmse == 0 else 20 * math.log10(255 / self.rmse)


@dataclass(frozen=True)
class Tolerance:
    mean: float
    max: float


# An encoder change (libvips upgrade, quality, JPEG vs WebP) moves the 24-px thumbnail by a few
# levels on average; a crop from the wrong side or a swapped channel by tens. See ADR 110.
DEFAULT_TOLERANCE = Tolerance(mean=6.0, max=64.0)


def distance(a: Picture, b: Picture) -> Distance | None:
    """None when the thumbnails are not comparable (different shape)."""
    if a.thumb_shape != b.thumb_shape or len(a.thumb) != len(b.thumb) or not a.thumb:
        return None
    diffs = [abs(x - y) for x, y in zip(a.thumb, b.thumb, strict=True)]
    rmse = math.sqrt(sum(d * d for d in diffs) / len(diffs))
    return Distance(sum(diffs) / len(diffs), float(max(diffs)), rmse)


@dataclass(frozen=True)
class Comparison:
    result: ProbeResult
    differences: tuple[str, ...]
    distance: Distance | None = None

    @property
    def passed(self) -> bool:
        return not self.differences

    def explain(self) -> str:
        """The request and both answers, for a person."""
        r = self.result
        head = "ok  " if self.passed else "FAIL"
        lines = [
            f"{head} {r.spec.name}: " + ("same" if self.passed else "; ".join(self.differences))
        ]
        lines.append(f"     canary:   {r.canary_request.describe()}")
        lines.append(f"               -> {r.canary.describe()}")
        lines.append(f"     baseline: {r.baseline_request.describe()}")
        lines.append(f"               -> {r.baseline.describe()}")
        if self.distance is not None:
            d = self.distance
            lines.append(
                f"     pixels: mean |diff| {d.mean:.2f}, max {d.max:.0f}, PSNR {d.psnr:.1f} dB"
            )
        return "\n".join(lines)


def compare(result: ProbeResult, tolerance: Tolerance = DEFAULT_TOLERANCE) -> Comparison:
    """Pass when the canary answered as the baseline did; otherwise say every difference."""
    c, b = result.canary, result.baseline
    diffs: list[str] = []
    if c.status == 0 or b.status == 0:
        for side, a in (("canary", c), ("baseline", b)):
            if a.status == 0:
                diffs.append(f"{side} gave no answer: {a.error}")
        return Comparison(result, tuple(diffs))
    if c.status != b.status:
        diffs.append(f"status {c.status} != {b.status}")
    if c.error != b.error:
        diffs.append(f"error {c.error} != {b.error}")
    for key, (cv, bv) in _pairs(c.headers, b.headers).items():
        if cv != bv:
            diffs.append(f"{key} {cv} != {bv}")
    for key, (cv, bv) in _pairs(c.fields, b.fields).items():
        if cv != bv:
            diffs.append(f"{key} {cv} != {bv}")
    dist: Distance | None = None
    cp, bp = c.picture, b.picture
    if (cp is None) != (bp is None):
        which = "canary's" if cp is None else "baseline's"
        diffs.append(f"only {which} body is not a decodable image")
    elif cp is not None and bp is not None:
        facts: tuple[tuple[str, object, object], ...] = (
            ("format", cp.format, bp.format),
            ("width", cp.width, bp.width),
            ("height", cp.height, bp.height),
            ("frames", cp.frames, bp.frames),
            ("alpha", cp.alpha, bp.alpha),
        )
        for what, fact_c, fact_b in facts:
            if fact_c != fact_b:
                diffs.append(f"{what} {fact_c} != {fact_b}")
        dist = distance(cp, bp)
        if dist is not None and (dist.mean > tolerance.mean or dist.max > tolerance.max):
            diffs.append(
                f"pixels differ: mean |diff| {dist.mean:.1f} (bound {tolerance.mean:.1f}), "
                f"max {dist.max:.0f} (bound {tolerance.max:.0f})"
            )
    return Comparison(result, tuple(diffs), dist)


def _pairs(
    a: tuple[tuple[str, str], ...], b: tuple[tuple[str, str], ...]
) -> dict[str, tuple[str, str]]:
    da, db = dict(a), dict(b)
    return {
        k: (da.get(k, "(absent)"), db.get(k, "(absent)")) for k in sorted(da.keys() | db.keys())
    }


@dataclass(frozen=True)
class ProbeReport:
    comparisons: tuple[Comparison, ...]
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return bool(self.comparisons) and all(c.passed for c in self.comparisons)

    @property
    def failures(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if not c.passed)

    def reason(self) -> str:
        """One line for a verdict table or an abort reason."""
        if not self.comparisons:
            return "no probe ran"
        if self.passed:
            return f"{len(self.comparisons)} golden probes: canary answered as baseline"
        first = self.failures[0]
        return (
            f"{len(self.failures)} of {len(self.comparisons)} golden probes differ; first: "
            f"{first.result.spec.name}: {'; '.join(first.differences)}"
        )

    def text(self, limit: int = 10) -> str:
        """The failing probes with their requests and both answers (at most `limit`)."""
        shown = [c.explain() for c in self.failures[:limit]]
        more = len(self.failures) - limit
        if more > 0:
            shown.append(f"... and {more} more differing probes")
        return "\n".join([self.reason(), *shown])


def compare_all(
    results: Iterable[ProbeResult], tolerance: Tolerance = DEFAULT_TOLERANCE
) -> ProbeReport:
    return ProbeReport(tuple(compare(r, tolerance) for r in results), tolerance)


def noise_floor(results: Iterable[ProbeResult]) -> Distance:
    """The largest pixel distance between two identical versions (stable vs baseline)."""
    worst = Distance(0.0, 0.0)
    for r in results:
        if r.canary.picture is None or r.baseline.picture is None:
            continue
        d = distance(r.canary.picture, r.baseline.picture)
        if d is not None:
            worst = Distance(
                max(worst.mean, d.mean), max(worst.max, d.max), max(worst.rmse, d.rmse)
            )
    return worst


def calibrate(floor: Distance, minimum: Tolerance = DEFAULT_TOLERANCE) -> Tolerance:
    """The bound: the default, or twice what two identical versions already differ by."""
    return Tolerance(max(minimum.mean, 2 * floor.mean), max(minimum.max, 2 * floor.max))


# --- the imperative shell ----------------------------------------------------------------------
_COMPARED_HEADERS = ("content-type", "vary")


def _cache_class(value: str | None) -> str:
    if value is None:
        return "(absent)"
    directives = {d.strip().split("=")[0].lower() for d in value.split(",")}
    if "no-store" in directives:
        return "no-store"
    if "private" in directives:
        return "private"
    return "cacheable" if directives & {"public", "max-age", "s-maxage"} else value


def _answer(response: httpx.Response, method: str, sent_body: bytes | None) -> Answer:
    headers: list[tuple[str, str]] = []
    for name in _COMPARED_HEADERS:
        value = response.headers.get(name)
        if value is not None:
            headers.append((name, value.split(";")[0].strip().lower()))
    headers.append(("cache-control", _cache_class(response.headers.get("cache-control"))))
    etag = response.headers.get("etag")
    form = "absent" if etag is None else ("weak" if etag.startswith("W/") else "strong")
    headers.append(("etag", form))
    error: str | None = None
    fields: list[tuple[str, str]] = []
    picture: Picture | None = None
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json") and method != "HEAD":
        try:
            payload = json.loads(response.content)
        except ValueError:
            payload = None
        if isinstance(payload, Mapping):
            if "error" in payload:
                error = str(payload["error"])
            elif method == "POST" and sent_body is not None:
                fields = _upload_fields(payload, sent_body)
    elif response.status_code == 200 and method == "GET":
        picture = picture_of(response.content)
        if picture is None:
            fields.append(("body", f"not an image ({len(response.content)} bytes)"))
    return Answer(response.status_code, tuple(headers), error, tuple(fields), picture, etag)


def _upload_fields(payload: Mapping[str, object], body: bytes) -> list[tuple[str, str]]:
    """The reply's facts; id and size are checked against what was sent, not echoed."""
    out = [(k, str(payload.get(k))) for k in ("width", "height", "format", "frames")]
    given = payload.get("id")
    out.append(
        (
            "id",
            "sha256 of the upload"
            if given == hashlib.sha256(body).hexdigest()
            else f"unexpected {given}",
        )
    )
    out.append(
        (
            "bytes",
            "size of the upload"
            if payload.get("bytes") == len(body)
            else f"unexpected {payload.get('bytes')}",
        )
    )
    return out


def execute(
    client: httpx.Client,
    base_url: str,
    tenant: ProbeTenant,
    corpus: Mapping[str, CorpusImage],
    spec: ProbeSpec,
    earlier: Mapping[str, Answer],
) -> tuple[SentRequest, Answer]:
    """Send one probe to one track."""
    tenant_id = spec.tenant or tenant.id
    body: bytes | None = None
    body_note = ""
    headers = dict(spec.headers)
    if spec.body is not None:
        if spec.body == "garbage":
            body = b"this is not an image, " * 8
        elif spec.body == "empty":
            body = b""
        else:
            body = corpus[spec.body].data
            headers["Content-Type"] = corpus[spec.body].content_type
        body_note = f"{spec.body} ({len(body)} bytes)"
    if spec.auth == "key":
        headers["Authorization"] = f"Bearer {tenant.api_key}"
    elif spec.auth == "wrong":
        headers["Authorization"] = "Bearer not-the-key-of-this-tenant"
    if spec.etag_from is not None:
        previous = earlier.get(spec.etag_from)
        headers["If-None-Match"] = previous.etag if previous and previous.etag else '"none"'
    if spec.image is None:
        path = f"/v1/{tenant_id}/images"
        query = ""
    else:
        image_id = corpus[spec.image].sha256 if spec.image in corpus else spec.image
        path = f"/v1/{tenant_id}/images/{image_id}"
        query = spec.query
        if spec.method in ("GET", "HEAD"):
            secret = tenant.signing_secret
            if spec.sign == "bad":
                sig = signature(b"not-the-secret", tenant_id, image_id, spec.query)
                query = f"{query}&sig={sig}" if query else f"sig={sig}"
            elif spec.sign == "auto" and secret is not None:
                sig = signature(secret, tenant_id, image_id, spec.query)
                query = f"{query}&sig={sig}" if query else f"sig={sig}"
    url = f"{path}?{query}" if query else path
    sent_headers = tuple((k, v) for k, v in headers.items() if k not in ("Content-Type",))
    sent = SentRequest(spec.method, url, sent_headers, body_note)
    for attempt in range(SHED_ATTEMPTS):
        try:
            response = client.request(
                spec.method, base_url.rstrip("/") + url, headers=headers, content=body
            )
        except httpx.HTTPError as exc:
            return sent, Answer(0, error=f"{type(exc).__name__}: {exc}")
        wait = shed_delay(response)
        if wait is None or attempt == SHED_ATTEMPTS - 1:
            break
        time.sleep(wait)
    return sent, _answer(response, spec.method, body)


# Load shedding is not behaviour: a 429, or a 503 with Retry-After (RFC 9110 15.6.4, 10.2.3),
# says "later", and the probe tenant shares its fair share with live traffic. A probe asks again,
# a few times and briefly; a track that keeps shedding is still compared as it answered.
SHED_ATTEMPTS = 4
SHED_MAX_WAIT = 2.0


def shed_delay(response: httpx.Response) -> float | None:
    """Seconds to wait before asking again, or None when the answer is not load shedding."""
    if response.status_code not in (429, 503) or "retry-after" not in response.headers:
        return None
    try:
        asked = float(response.headers["retry-after"])
    except ValueError:  # an HTTP-date: not used by this service, wait the most
        asked = SHED_MAX_WAIT
    return min(max(asked, 0.1), SHED_MAX_WAIT)


def run_probes(
    canary_url: str,
    baseline_url: str,
    tenant: ProbeTenant,
    *,
    run_id: str,
    timeout: float = 15.0,
    specs: Sequence[ProbeSpec] | None = None,
) -> tuple[ProbeResult, ...]:
    """Send every probe to canary and baseline, and keep both answers.

    `run_id` salts each track's corpus: use a fresh one per run (the ledger id and the step).
    Probes run one at a time, so they add little load and no cross-talk.
    """
    chosen = tuple(specs) if specs is not None else plan(tenant)
    corpora = {
        side: {img.name: img for img in images} for side, images in track_corpora(run_id).items()
    }
    earlier: dict[str, dict[str, Answer]] = {"canary": {}, "baseline": {}}
    urls = {"canary": canary_url, "baseline": baseline_url}
    results: list[ProbeResult] = []
    # The tracks are separate processes: each probe goes to both at once, the probes in order.
    with httpx.Client(timeout=timeout) as client, ThreadPoolExecutor(2) as pool:
        for spec in chosen:
            futures = {
                side: pool.submit(
                    execute, client, urls[side], tenant, corpora[side], spec, earlier[side]
                )
                for side in ("canary", "baseline")
            }
            answers = {side: future.result() for side, future in futures.items()}
            for side, (_, answer) in answers.items():
                earlier[side][spec.name] = answer
            results.append(ProbeResult(spec, *answers["canary"], *answers["baseline"]))
    return tuple(results)


def probe_step(
    canary_url: str,
    baseline_url: str,
    tenant: ProbeTenant,
    *,
    run_id: str,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> ProbeReport:
    """What the orchestrator calls before traffic shifts and at every step."""
    return compare_all(run_probes(canary_url, baseline_url, tenant, run_id=run_id), tolerance)


def preflight(
    stable_url: str, baseline_url: str, tenant: ProbeTenant, *, run_id: str
) -> tuple[ProbeReport, Tolerance]:
    """Stable against baseline (the same version twice), before the canary starts.

    The report must pass: if two copies of one version already answer differently, the
    environment is not fit to judge a canary. The tolerance is the pixel bound for this
    delivery's steps, widened from the default by the measured noise floor."""
    results = run_probes(stable_url, baseline_url, tenant, run_id=run_id)
    tolerance = calibrate(noise_floor(results))
    return compare_all(results, tolerance), tolerance


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m delivery.probes --canary URL --baseline URL --tenant ID`: probe by hand.

    The API key and signing secret are read from environment variables (named by
    --key-env/--secret-env), never from the command line. Exit 0 when every probe matches."""
    import argparse
    import os
    import uuid

    parser = argparse.ArgumentParser(description="golden probes: canary against baseline")
    parser.add_argument("--canary", required=True, help="base URL, e.g. http://127.0.0.1:8081")
    parser.add_argument("--baseline", required=True, help="base URL of the baseline")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--key-env", default="PROBE_API_KEY", help="variable holding the key")
    parser.add_argument("--secret-env", default="", help="variable holding a signing secret")
    parser.add_argument("--all", action="store_true", help="print every probe, not only failures")
    args = parser.parse_args(argv)
    key = os.environ.get(args.key_env, "")
    if not key:
        parser.error(f"set {args.key_env} to the tenant's API key")
    secret = os.environ.get(args.secret_env, "") if args.secret_env else ""
    tenant = ProbeTenant(args.tenant, key, secret.encode() or None, not secret)
    report = probe_step(args.canary, args.baseline, tenant, run_id=uuid.uuid4().hex)
    print("\n".join(c.explain() for c in report.comparisons) if args.all else report.text())
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
