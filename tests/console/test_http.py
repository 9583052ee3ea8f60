"""The console over HTTP (the real process from `deliver console`): read-only, same-origin only,
strict CSP on every response, no secrets, stable URLs for the summary and the PNG chart."""

import re

import console_kit as kit
import httpx
import pytest

pytestmark = [pytest.mark.e2e]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def urls(stack: kit.Stack) -> list[str]:
    ids = (stack.aborted_id, stack.promoted_id, stack.refused_id)
    return [
        "/env/console-e2e",
        "/env/console-e2e?outcome=aborted",
        "/dashboards",
        "/dashboards/image-service-canary",
        *(f"/deliveries/{i}" for i in ids),
        *(f"/deliveries/{i}/summary.md" for i in ids),
    ]


def test_every_page_has_the_strict_csp_and_no_other_origin(stack: kit.Stack) -> None:
    with httpx.Client(base_url=stack.console) as client:
        for url in [*urls(stack), "/static/console.css", "/deliveries/nope"]:
            resp = client.get(url)
            assert resp.headers["content-security-policy"] == CSP, url
            assert resp.headers["x-content-type-options"] == "nosniff", url
            if "text/html" in resp.headers["content-type"]:
                refs = re.findall(r'(?:src|href|action)="([^"]*)"', resp.text)
                assert refs, url
                assert all(r.startswith(("/", "#")) and not r.startswith("//") for r in refs), url
                assert "<script>" not in resp.text, url  # inline scripts: none
                assert " style=" not in resp.text, url  # inline styles: none
        assert client.get("/deliveries/nope").status_code == 404


def test_read_only_every_route_refuses_writes(stack: kit.Stack) -> None:
    with httpx.Client(base_url=stack.console) as client:
        for url in ["/", f"/deliveries/{stack.aborted_id}", "/dashboards", "/static/console.js"]:
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                assert client.request(method, url).status_code == 405, (method, url)


def test_tenant_keys_in_a_record_never_reach_a_page(stack: kit.Stack) -> None:
    assert kit.PLANTED_SECRET in stack.ledger.read_text()  # the ledger really holds it
    with httpx.Client(base_url=stack.console) as client:
        for url in urls(stack):
            resp = client.get(url)
            assert resp.status_code == 200, url
            assert kit.PLANTED_SECRET not in resp.text, url


def test_summary_and_png_chart_have_stable_urls(stack: kit.Stack) -> None:
    with httpx.Client(base_url=stack.console, timeout=60) as client:
        summary = client.get(f"/deliveries/{stack.aborted_id}/summary.md")
        assert summary.headers["content-type"].startswith("text/markdown")
        assert "## Delivery of `bad-globex` to `console-e2e`: **ABORTED**" in summary.text
        assert re.search(r"\| error_ratio \| globex \| 30% \| 0% \| \+30\.00 pp \|", summary.text)
        assert f"{stack.console}/deliveries/{stack.aborted_id}" in summary.text
        png = client.get(f"/deliveries/{stack.aborted_id}/chart.png")
        assert png.status_code == 200
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
