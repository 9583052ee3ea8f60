"""The API in-process: upload, renditions, caching headers, signatures, delete, health."""

from __future__ import annotations

from decimal import Decimal

import pyvips
from image_service.options import RenditionOptions
from image_service.signing import sign, signed_url
from service_testkit import ACME_OLD_KEY, ACME_SECRETS, BETA_KEY, App, Images, image_id


def signed(
    tenant: str, iid: str, options: RenditionOptions, secret: bytes = ACME_SECRETS[0]
) -> str:
    return signed_url("", secret, tenant, iid, options)


def test_upload_returns_id_and_dimensions(app: App, images: Images) -> None:
    reply = app.upload(images.jpeg)
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body == {
        "id": image_id(images.jpeg),
        "width": 320,
        "height": 200,
        "format": "jpeg",
        "bytes": len(images.jpeg),
        "frames": 1,
    }
    assert reply.headers["location"] == f"/v1/acme/images/{body['id']}"


def test_upload_is_idempotent(app: App, images: Images) -> None:
    first = app.upload(images.png).json()
    second = app.upload(images.png).json()
    assert first == second
    assert len([p for p in app.stored_files() if "originals" in p.parts]) == 1


def test_upload_requires_the_tenants_key(app: App, images: Images) -> None:
    assert app.upload(images.jpeg, key="wrong").status_code == 401
    assert app.upload(images.jpeg, key=BETA_KEY).status_code == 401  # another tenant's key
    no_auth = app.client.post("/v1/acme/images", content=images.jpeg)
    assert no_auth.status_code == 401
    assert no_auth.json()["error"] == "unauthorized"
    assert no_auth.headers["www-authenticate"].startswith("Bearer")
    assert app.upload(images.jpeg, key=ACME_OLD_KEY).status_code == 201  # rotation: both work
    assert app.stored_files() == [app.root / "acme" / "originals" / image_id(images.jpeg)]


def test_unknown_tenant_is_404(app: App, images: Images) -> None:
    reply = app.upload(images.jpeg, tenant="nobody")
    assert reply.status_code == 404
    assert reply.json() == {"error": "unknown_tenant", "detail": "no such tenant"}


def test_signed_rendition_then_stored_copy(app: App, images: Images) -> None:
    iid = app.upload(images.jpeg).json()["id"]
    options = RenditionOptions(width=100, format="webp")
    url = signed("acme", iid, options)
    first = app.client.get(url)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/webp"
    # This app is a canary (see the settings fixture): cached for minutes, never immutable.
    assert "immutable" not in first.headers["cache-control"]
    out = pyvips.Image.new_from_buffer(first.content, "")
    assert (out.width, out.height) == (100, 63)
    renditions = [p for p in app.stored_files() if "renditions" in p.parts]
    assert len(renditions) == 1
    second = app.client.get(url)
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert [p for p in app.stored_files() if "renditions" in p.parts] == renditions
    metrics = app.client.get("/metrics").text
    labels = 'tenant="acme",track="canary",version="abc123"'
    assert f'image_service_rendition_cache_total{{result="miss",{labels}}} 1.0' in metrics
    assert f'image_service_rendition_cache_total{{result="hit",{labels}}} 1.0' in metrics


def test_etag_and_if_none_match(app: App, images: Images) -> None:
    iid = app.upload(images.jpeg).json()["id"]
    url = signed("acme", iid, RenditionOptions(width=50))
    etag = app.client.get(url).headers["etag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    not_modified = app.client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    other = app.client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_format_auto_negotiates_and_varies(app: App, images: Images) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    url = f"/v1/beta/images/{iid}?w=64&format=auto"
    webp = app.client.get(url, headers={"Accept": "image/avif,image/webp,*/*"})
    avif = app.client.get(url, headers={"Accept": "image/avif,*/*;q=0.8"})
    plain = app.client.get(url, headers={"Accept": "*/*"})
    refused = app.client.get(url, headers={"Accept": "image/webp;q=0, */*"})
    assert webp.headers["content-type"] == "image/webp"
    assert avif.headers["content-type"] == "image/avif"
    assert plain.headers["content-type"] == "image/jpeg"
    assert refused.headers["content-type"] == "image/jpeg"
    assert {r.headers["vary"] for r in (webp, avif, plain)} == {"Accept"}
    assert len({webp.headers["etag"], avif.headers["etag"], plain.headers["etag"]}) == 3
    fixed = app.client.get(f"/v1/beta/images/{iid}?w=64&format=png")
    assert "vary" not in fixed.headers
    assert fixed.headers["content-type"] == "image/png"


def test_default_format_is_the_originals(app: App, images: Images) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.get(f"/v1/beta/images/{iid}")
    assert reply.headers["content-type"] == "image/png"
    out = pyvips.Image.new_from_buffer(reply.content, "")
    assert (out.width, out.height) == (320, 200)


def test_signatures_are_required_and_checked(app: App, images: Images) -> None:
    iid = app.upload(images.jpeg).json()["id"]
    options = RenditionOptions(width=80, dpr=Decimal(2))
    good = signed("acme", iid, options)
    assert app.client.get(good).status_code == 200
    old_secret = signed("acme", iid, options, ACME_SECRETS[1])
    assert app.client.get(old_secret).status_code == 200
    unsigned = app.client.get(f"/v1/acme/images/{iid}?w=80&dpr=2")
    assert unsigned.status_code == 403
    assert unsigned.json()["error"] == "signature_required"
    tampered = good.replace("w=80", "w=81")
    assert app.client.get(tampered).json()["error"] == "invalid_signature"
    wrong_secret = signed("acme", iid, options, b"not-a-secret")
    assert app.client.get(wrong_secret).status_code == 403
    # Equivalent spellings share the canonical form, so the same signature verifies.
    sig = sign(ACME_SECRETS[0], "acme", iid, options)
    respelled = f"/v1/acme/images/{iid}?dpr=2.00&sig={sig}&fit=inside&w=80"
    assert app.client.get(respelled).status_code == 200


def test_another_tenants_signature_and_id_are_refused(app: App, images: Images) -> None:
    iid = app.upload(images.jpeg, tenant="beta", key=BETA_KEY).json()["id"]
    # acme signs a URL for beta's image under acme's path: the image is not acme's.
    url = signed("acme", iid, RenditionOptions(width=10))
    assert app.client.get(url).status_code == 404
    # A signature made for acme, replayed on beta's path, does not verify for beta.
    sig = sign(ACME_SECRETS[0], "acme", iid, RenditionOptions(width=10))
    assert app.client.get(f"/v1/beta/images/{iid}?w=10&sig={sig}").status_code == 403


def test_delete_removes_original_and_renditions(app: App, images: Images) -> None:
    iid = app.upload(images.jpeg, tenant="beta", key=BETA_KEY).json()["id"]
    for w in (10, 20, 30):
        assert app.client.get(f"/v1/beta/images/{iid}?w={w}").status_code == 200
    assert len(app.stored_files()) == 4
    auth = {"Authorization": f"Bearer {BETA_KEY}"}
    assert app.client.delete(f"/v1/beta/images/{iid}").status_code == 401
    assert app.client.delete(f"/v1/beta/images/{iid}", headers=auth).status_code == 204
    assert app.stored_files() == []
    assert app.client.get(f"/v1/beta/images/{iid}?w=10").status_code == 404
    assert app.client.delete(f"/v1/beta/images/{iid}", headers=auth).status_code == 404


def test_health_readiness_and_openapi(app: App) -> None:
    assert app.client.get("/healthz").json() == {"status": "ok"}
    assert app.client.get("/readyz").status_code == 200
    app.service.draining = True
    assert app.client.get("/readyz").status_code == 503
    spec = app.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/{tenant}/images/{image_id}" in spec["paths"]


def test_openapi_spec_is_valid(app: App) -> None:
    from openapi_spec_validator import validate

    validate(app.client.get("/openapi.json").json())


def test_readiness_fails_when_storage_is_gone(app: App) -> None:
    import shutil

    shutil.rmtree(app.root)
    reply = app.client.get("/readyz")
    assert reply.status_code == 503
    metrics = app.client.get("/metrics").text
    assert 'image_service_storage_errors_total{backend="local",operation="check"' in metrics


def test_unknown_route_is_json_404(app: App) -> None:
    reply = app.client.get("/nope")
    assert reply.status_code == 404
    assert reply.json()["error"] == "not_found"
    assert app.client.put("/v1/acme/images").status_code == 405


def test_request_id_is_echoed_or_made(app: App) -> None:
    echoed = app.client.get("/healthz", headers={"X-Request-Id": "abc-1"})
    assert echoed.headers["x-request-id"] == "abc-1"
    made = app.client.get("/healthz", headers={"X-Request-Id": "bad id!"}).headers["x-request-id"]
    assert len(made) == 32


def test_avif_and_animated_webp_uploads(app: App) -> None:
    still = pyvips.Image.black(64, 48, bands=3).new_from_image([10, 200, 90])
    avif = bytes(still.cast("uchar").copy(interpretation="srgb").heifsave_buffer(compression="av1"))
    reply = app.upload(avif)
    assert reply.status_code == 201, reply.text
    assert (reply.json()["format"], reply.json()["width"]) == ("avif", 64)
    frames = [(pyvips.Image.black(32, 32) + i * 50).cast("uchar") for i in range(3)]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 32)
    webp = app.upload(bytes(strip.webpsave_buffer()))
    assert webp.status_code == 201, webp.text
    assert webp.json()["frames"] == 3
    url = signed("acme", webp.json()["id"], RenditionOptions(width=16))
    out = pyvips.Image.new_from_buffer(app.client.get(url).content, "", n=-1)
    assert out.get("n-pages") == 3


def test_head_request_has_headers_and_no_body(app: App, images: Images) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    reply = app.client.head(f"/v1/beta/images/{iid}?w=20")
    assert reply.status_code == 200
    assert reply.content == b""
    assert reply.headers["etag"].startswith('"')


def test_a_tenant_cannot_delete_another_tenants_image(app: App, images: Images) -> None:
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    acme = {"Authorization": "Bearer acme-key-1"}
    assert app.client.delete(f"/v1/acme/images/{iid}", headers=acme).status_code == 404
    beta_as_acme = app.client.delete(f"/v1/beta/images/{iid}", headers=acme)
    assert beta_as_acme.status_code == 401
    assert app.client.get(f"/v1/beta/images/{iid}").status_code == 200
