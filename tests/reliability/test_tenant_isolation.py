"""Tenant isolation, adversarially: every attack is refused with a 4xx and nothing leaks.

The same attack list runs in-process (ASGI, paths normalised the way an HTTP client does) and
against a real uvicorn server over raw HTTP/1.1 (paths sent byte for byte, so dot segments and
odd encodings reach the server). A leak is any attack answered 2xx/3xx, any reply carrying image
bytes, or any reply that echoes a secret; the count must be 0.
"""

from __future__ import annotations

import http.client
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from image_service.options import parse_options
from image_service.signing import sign
from reliability_kit import (
    ALPHA_KEY,
    ALPHA_SECRET,
    BRAVO_KEY,
    BRAVO_SECRET,
    SECRETS,
    Starter,
    auth,
    image_id,
    in_process,
    record,
    seed_images,
    stored_files,
)

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"\x00\x00\x00")


@dataclass(frozen=True)
class Attack:
    name: str
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    location: str | None = None


Send = Callable[[Attack], Reply]


def signed(secret: str, tenant: str, image: str, query: str) -> str:
    pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    options, _ = parse_options(pairs, 8192)  # type: ignore[arg-type]
    return sign(secret.encode(), tenant, image, options)


def attacks(a_id: str, b_id: str, jpeg: bytes) -> list[Attack]:
    """Tenant alpha (signed reads only) owns a_id; tenant bravo (unsigned reads) owns b_id."""
    a_sig = signed(ALPHA_SECRET, "alpha", a_id, "w=100")
    a_sig_on_b = signed(ALPHA_SECRET, "bravo", b_id, "w=100")
    b_sig_on_a = signed(BRAVO_SECRET, "alpha", a_id, "w=100")
    bravo_sig_for_a = signed(BRAVO_SECRET, "bravo", a_id, "w=100")
    out = [
        # A's key on B's paths.
        Attack("alpha key uploads to bravo", "POST", "/v1/bravo/images", auth(ALPHA_KEY), jpeg),
        Attack(
            "alpha key deletes bravo image", "DELETE", f"/v1/bravo/images/{b_id}", auth(ALPHA_KEY)
        ),
        Attack(
            "bravo key deletes alpha image", "DELETE", f"/v1/alpha/images/{a_id}", auth(BRAVO_KEY)
        ),
        Attack("bravo key uploads to alpha", "POST", "/v1/alpha/images", auth(BRAVO_KEY), jpeg),
        Attack("no key uploads", "POST", "/v1/alpha/images", {}, jpeg),
        Attack("empty bearer", "POST", "/v1/alpha/images", {"Authorization": "Bearer "}, jpeg),
        Attack(
            "basic scheme",
            "POST",
            "/v1/alpha/images",
            {"Authorization": f"Basic {ALPHA_KEY}"},
            jpeg,
        ),
        Attack("key prefix", "POST", "/v1/alpha/images", auth(ALPHA_KEY[:-1]), jpeg),
        Attack("key with suffix", "POST", "/v1/alpha/images", auth(ALPHA_KEY + "x"), jpeg),
        Attack("two keys", "POST", "/v1/alpha/images", auth(f"{BRAVO_KEY} {ALPHA_KEY}"), jpeg),
        # A's signature on B's URL, and secrets crossed between tenants.
        Attack("alpha sig on bravo url", "GET", f"/v1/bravo/images/{b_id}?w=100&sig={a_sig}"),
        Attack(
            "alpha-secret sig for bravo", "GET", f"/v1/bravo/images/{b_id}?w=100&sig={a_sig_on_b}"
        ),
        Attack(
            "bravo-secret sig for alpha", "GET", f"/v1/alpha/images/{a_id}?w=100&sig={b_sig_on_a}"
        ),
        Attack(
            "alpha sig moved to bravo path", "GET", f"/v1/bravo/images/{a_id}?w=100&sig={a_sig}"
        ),
        Attack("no sig on signed tenant", "GET", f"/v1/alpha/images/{a_id}?w=100"),
        Attack("empty sig", "GET", f"/v1/alpha/images/{a_id}?w=100&sig="),
        Attack("truncated sig", "GET", f"/v1/alpha/images/{a_id}?w=100&sig={a_sig[:-2]}"),
        Attack("padded sig", "GET", f"/v1/alpha/images/{a_id}?w=100&sig={a_sig}="),
        Attack("two sigs", "GET", f"/v1/alpha/images/{a_id}?w=100&sig=x&sig={a_sig}"),
        # IDOR: bravo reads unsigned, so alpha's id on bravo's path must simply not exist.
        Attack("alpha id on bravo path", "GET", f"/v1/bravo/images/{a_id}"),
        Attack(
            "alpha id, bravo-signed", "GET", f"/v1/bravo/images/{a_id}?w=100&sig={bravo_sig_for_a}"
        ),
        Attack("alpha id on bravo path, HEAD", "HEAD", f"/v1/bravo/images/{a_id}"),
        Attack(
            "bravo key deletes alpha id on bravo path",
            "DELETE",
            f"/v1/bravo/images/{a_id}",
            auth(BRAVO_KEY),
        ),
    ]
    # A replayed signature with altered options.
    for altered in (
        "w=101",
        "w=100&h=100",
        "w=100&format=png",
        "w=100&q=99",
        "w=100&dpr=2",
        "w=100&fit=cover&h=5",
        "w=100&gravity=north",
        "w=1000",
        "h=100",
        "",
    ):
        joiner = "&" if altered else ""
        out.append(
            Attack(
                f"replay sig with {altered or 'no options'}",
                "GET",
                f"/v1/alpha/images/{a_id}?{altered}{joiner}sig={a_sig}",
            )
        )
    out.append(
        Attack("replay sig on another id", "GET", f"/v1/alpha/images/{b_id}?w=100&sig={a_sig}")
    )
    # Id guessing.
    for n in range(20):
        guess = secrets.token_hex(32)
        out.append(Attack(f"random id {n}", "GET", f"/v1/bravo/images/{guess}"))
    out += [
        Attack(
            "id off by one", "GET", f"/v1/bravo/images/{a_id[:-1]}{'0' if a_id[-1] != '0' else '1'}"
        ),
        Attack("uppercase id", "GET", f"/v1/bravo/images/{b_id.upper()}"),
        Attack("id prefix", "GET", f"/v1/bravo/images/{b_id[:32]}"),
        Attack("id with extension", "GET", f"/v1/bravo/images/{b_id}.png"),
        Attack("alpha id with trailing slash", "GET", f"/v1/bravo/images/{a_id}/"),
        Attack("unsigned, trailing slash", "GET", f"/v1/alpha/images/{a_id}/?w=100"),
        Attack("id with trailing dot", "GET", f"/v1/bravo/images/{b_id}."),
    ]
    # Traversal and encoding tricks in the tenant and the id.
    tricks = [
        f"/v1/bravo/../alpha/images/{a_id}",
        f"/v1/bravo/%2e%2e/alpha/images/{a_id}",
        f"/v1/bravo%2f..%2falpha/images/{a_id}",
        f"/v1/%2e%2e/alpha/images/{a_id}",
        f"/v1/bravo/images/..%2f..%2falpha%2foriginals%2f{a_id}",
        f"/v1/bravo/images/%2e%2e%2f%2e%2e%2falpha%2foriginals%2f{a_id}",
        f"/v1/bravo/images/..%252f..%252falpha%252f{a_id}",
        f"/v1/bravo/images/..\\..\\alpha\\{a_id}",
        f"/v1/bravo/images/{a_id}%00",
        f"/v1/bravo%00/images/{a_id}",
        f"/v1/ALPHA/images/{a_id}",
        f"/v1/Alpha/images/{a_id}?w=100&sig={a_sig}",
        f"/v1/alpha%20/images/{a_id}?w=100&sig={a_sig}",
        f"/v1/%61lpha/images/{a_id}",  # percent-encoded "a": alpha still needs a signature
        f"/v1/%D0%B0lpha/images/{a_id}",  # Cyrillic a
        f"/v1/alpha;bravo/images/{a_id}",
        f"/v1/bravo/images/{a_id};{b_id}",
        f"/v1/bravo/images/{b_id}/../../alpha/images/{a_id}",
        f"//v1/alpha/images/{a_id}",
        f"/v1//alpha/images/{a_id}",
        f"/v1/{'a' * 64}/images/{a_id}",
        "/v1/alpha/images/" + "0" * 10_000,
        f"/v1/bravo/images/{a_id}?tenant=alpha",
        f"/v1/bravo/images/{a_id}?url=file:///etc/passwd",
        "/v1/bravo/images/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/v1/bravo/images/%2fetc%2fpasswd",
    ]
    out += [Attack(f"trick {t[:60]}", "GET", t) for t in tricks]
    out += [Attack(f"delete trick {t[:60]}", "DELETE", t, auth(BRAVO_KEY)) for t in tricks[:10]]
    # Oversize headers: a huge key, many headers, a huge request id.
    out += [
        Attack("huge bearer", "POST", "/v1/alpha/images", auth(ALPHA_KEY + "A" * 70_000), jpeg),
        Attack(
            "huge prefixed bearer",
            "POST",
            "/v1/alpha/images",
            {"Authorization": "Bearer " + "A" * 70_000 + " " + ALPHA_KEY},
            jpeg,
        ),
        Attack(
            "many headers",
            "GET",
            f"/v1/alpha/images/{a_id}",
            {f"X-Pad-{i}": "x" * 100 for i in range(500)},
        ),
        Attack("huge header value", "GET", f"/v1/alpha/images/{a_id}", {"X-Pad": "y" * 200_000}),
        Attack("huge query", "GET", f"/v1/alpha/images/{a_id}?w=100&sig={'A' * 50_000}"),
    ]
    return out


def is_leak(attack: Attack, reply: Reply) -> bool:
    if 200 <= reply.status < 400:
        return True
    if reply.body.startswith(IMAGE_MAGIC):
        return True
    return any(s.encode() in reply.body for s in SECRETS)


def run_suite(send: Send, a_id: str, b_id: str, jpeg: bytes) -> tuple[int, list[str]]:
    leaks: list[str] = []
    suite = attacks(a_id, b_id, jpeg)
    for attack in suite:
        reply = send(attack)
        if 300 <= reply.status < 400 and reply.location:
            # Starlette redirects a trailing slash; the redirect itself carries nothing, so
            # follow it once (same method and headers) and judge where it lands.
            moved = urlsplit(reply.location)
            target = moved.path + (f"?{moved.query}" if moved.query else "")
            reply = send(Attack(attack.name, attack.method, target, attack.headers, attack.body))
        # A refused request is a 4xx; the server may also drop a hostile connection (status 0).
        refused = reply.status == 0 or 400 <= reply.status < 500
        if is_leak(attack, reply) or not refused:
            leaks.append(f"{attack.name}: {reply.status} {reply.body[:120]!r}")
    return len(suite), leaks


def owners_still_served(send: Send, a_id: str, b_id: str) -> None:
    """The attacks changed nothing: each owner still gets its own image."""
    a_sig = signed(ALPHA_SECRET, "alpha", a_id, "w=100")
    own_a = send(Attack("own a", "GET", f"/v1/alpha/images/{a_id}?w=100&sig={a_sig}"))
    own_b = send(Attack("own b", "GET", f"/v1/bravo/images/{b_id}?w=100"))
    assert own_a.status == 200
    assert own_a.body.startswith(b"\xff\xd8\xff")
    assert own_b.status == 200
    assert own_b.body.startswith(b"\x89PNG")


def test_isolation_in_process(tmp_path: Path) -> None:
    seeds = seed_images()
    store = tmp_path / "store"
    with in_process(store) as client:

        def send(attack: Attack) -> Reply:
            reply = client.request(
                attack.method,
                attack.target,
                headers=attack.headers,
                content=attack.body or None,
                follow_redirects=False,
            )
            return Reply(reply.status_code, reply.content, reply.headers.get("location"))

        a = client.post("/v1/alpha/images", content=seeds["jpeg"], headers=auth(ALPHA_KEY))
        b = client.post("/v1/bravo/images", content=seeds["png"], headers=auth(BRAVO_KEY))
        assert (a.status_code, b.status_code) == (201, 201)
        a_id, b_id = a.json()["id"], b.json()["id"]
        owners_still_served(send, a_id, b_id)  # sanity: the suite's "own" requests do succeed
        before = stored_files(store)
        total, leaks = run_suite(send, a_id, b_id, seeds["gif"])
        after = stored_files(store)
        owners_still_served(send, a_id, b_id)
    record("tenant isolation (in-process)", attacks=total, leaks=len(leaks))
    assert leaks == []
    assert after == before  # no attack stored or deleted anything
    assert total >= 100


def raw_sender(port: int) -> Send:
    def send(attack: Attack) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.putrequest(attack.method, attack.target, skip_accept_encoding=True)
            for name, value in attack.headers.items():
                conn.putheader(name, value)
            if attack.body:
                conn.putheader("Content-Length", str(len(attack.body)))
            conn.endheaders(attack.body or None)
            response = conn.getresponse()
            return Reply(response.status, response.read(), response.getheader("location"))
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
            return Reply(0, b"")
        finally:
            conn.close()

    return send


def test_isolation_live_server(service: Starter) -> None:
    seeds = seed_images()
    proc = service("isolation")
    send = raw_sender(proc.port)
    a = send(Attack("up a", "POST", "/v1/alpha/images", auth(ALPHA_KEY), seeds["jpeg"]))
    b = send(Attack("up b", "POST", "/v1/bravo/images", auth(BRAVO_KEY), seeds["png"]))
    assert (a.status, b.status) == (201, 201)
    a_id, b_id = image_id(seeds["jpeg"]), image_id(seeds["png"])
    store = Path(proc.env["IMAGE_SERVICE_STORAGE"])
    before = stored_files(store)
    total, leaks = run_suite(send, a_id, b_id, seeds["gif"])
    assert [p for p in stored_files(store) if "originals" in p.parts] == [
        p for p in before if "originals" in p.parts
    ]
    owners_still_served(send, a_id, b_id)
    assert proc.process.poll() is None  # the hostile requests did not take the server down
    record("tenant isolation (live uvicorn)", attacks=total, leaks=len(leaks))
    assert leaks == []


OVERSIZE = {
    "one 1 MB header": {"X-Pad": "z" * 1_000_000},
    "10,000 headers": {f"X-Pad-{i}": "z" for i in range(10_000)},
}


@pytest.mark.parametrize("headers", OVERSIZE.values(), ids=OVERSIZE.keys())
def test_oversize_headers_are_refused(service: Starter, headers: dict[str, str]) -> None:
    proc = service("headers")
    send = raw_sender(proc.port)
    reply = send(Attack("big", "GET", "/healthz", headers))
    record("oversize headers", case=len(headers), status=reply.status)
    assert send(Attack("after", "GET", "/healthz")).status == 200  # still serving
    assert reply.status == 0 or 400 <= reply.status < 500, (
        f"oversize headers answered {reply.status}"
    )
