"""The console in a real headless browser (Debian's chromium driven by Playwright), over a real
ledger and a real Prometheus. Asserts what a person sees; waits are bounded, never fixed.

`bench/console/screenshots.sh` runs these tests with CONSOLE_SCREENSHOTS set: each test then
saves a screenshot of the page it has just checked.
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import console_kit as kit
import pytest
from delivery.ledger import Outcome

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHOTS = os.environ.get("CONSOLE_SCREENSHOTS", "")
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(kit.CHROMIUM).exists():
        pytest.skip(
            f"Debian's chromium is not installed at {kit.CHROMIUM} "
            "(scripts/setup.sh installs it when run as root with apt)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=kit.CHROMIUM, args=kit.CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    # A CSP violation or a script error shows up here: the page must have none.
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    yield page
    context.close()
    assert problems == [], problems


def shoot(page: Any, name: str, full: bool = True) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=full)


def test_lists_deliveries_and_filters_by_outcome(stack: kit.Stack, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(stack.console + "/")
    expect(page).to_have_url(re.compile(f"/env/{kit.ENV}$"))
    expect(page.get_by_role("heading", name=f"Deliveries to {kit.ENV}")).to_be_visible()
    rows = page.locator("table.deliveries tbody tr")
    for version, outcome in (("good-1", "promoted"), ("wide-change", "refused")):
        row = rows.filter(has=page.get_by_role("link", name=version, exact=True))
        expect(row.locator(".badge")).to_have_text(outcome)
    bad = rows.filter(has=page.get_by_role("link", name="bad-globex", exact=True))
    expect(bad.locator(".badge")).to_have_text("aborted")
    expect(bad.locator("td.reason")).to_contain_text("globex")
    expect(bad).to_contain_text("allowed: service, 2 change(s), risk 2")
    refused = rows.filter(has=page.get_by_role("link", name="wide-change", exact=True))
    expect(refused).to_contain_text("refused: service, 9 change(s), risk 14")
    figures = page.locator("dl.figures")
    expect(figures.locator("div", has_text="promoted / aborted").locator("dd")).to_have_text(
        re.compile(r"^1 / 1$")
    )
    expect(page.get_by_role("img", name=re.compile("Change-fail rate"))).to_be_visible()
    shoot(page, "deliveries")

    page.get_by_label("outcome").select_option("aborted")
    page.get_by_role("button", name="filter").click()
    expect(page).to_have_url(re.compile(r"outcome=aborted"))
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".badge")).to_have_text("aborted")
    expect(rows.first).to_contain_text("bad-globex")


def test_aborted_delivery_shows_the_failing_tenant_chart_and_reason(
    stack: kit.Stack, page: Any
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{stack.console}/env/{kit.ENV}")
    page.get_by_role("link", name="bad-globex", exact=True).click()
    expect(page).to_have_url(f"{stack.console}/deliveries/{stack.aborted_id}")
    expect(page.locator("#outcome")).to_have_text("aborted")
    expect(page.locator(".why .words")).to_contain_text("Aborted: the canary was removed")
    expect(page.locator("#reason")).to_contain_text("the judge failed the canary at 10%")
    expect(page.locator("#reason")).to_contain_text("globex")

    panel = page.locator('article.metric.fail[data-metric="error_ratio"][data-scope="globex"]')
    expect(panel).to_be_visible()
    expect(panel.locator("h3")).to_contain_text("5xx error ratio — tenant globex")
    expect(panel.locator(".decision")).to_contain_text(
        "Failed: 5xx error ratio for tenant globex is worse on the canary"
    )
    expect(panel.locator(".decision")).to_contain_text("significant (p = ")
    expect(panel.locator("figcaption")).to_contain_text("Prometheus")
    chart = panel.get_by_role("img", name=re.compile("tenant globex: canary vs baseline"))
    expect(chart).to_be_visible()
    canary = chart.locator("polyline.canary")
    baseline = chart.locator("polyline.baseline")
    expect(canary).to_have_count(1)
    assert int(canary.get_attribute("data-points") or 0) >= 3
    # What a person sees: the canary's line runs above the baseline's (SVG y grows downwards).
    assert _mean_y(canary.get_attribute("points")) < _mean_y(baseline.get_attribute("points"))
    expect(chart.locator("polygon.band")).to_have_count(1)
    expect(chart.locator("text.marker-label.fail")).to_have_text("10% FAIL")
    # Tenants that passed are not among the failures.
    expect(page.locator('article.metric.fail[data-scope="acme"]')).to_have_count(0)
    expect(page.locator("table.looks tbody tr")).to_have_count(1)
    expect(page.locator("table.looks .badge")).to_have_text("fail")
    shoot(page, "aborted-delivery")


def test_follows_a_running_delivery_live(stack: kit.Stack, page: Any) -> None:
    from playwright.sync_api import expect

    start, end = stack.window
    # Its own environment, so the list test's figures hold whichever test runs first.
    live = kit.delivery("live-20261129T113000-dddddd", "good-2", start - 1, env="live")
    kit.append(stack.ledger, kit.started(live, start - 1))
    page.goto(f"{stack.console}/deliveries/{live.id}")
    expect(page.locator("#outcome")).to_have_text("running")
    expect(page.locator(".live")).to_be_visible()
    expect(page.get_by_text("No judge look yet.")).to_be_visible()
    expect(page.locator(".why .words")).to_have_text("Running: step 1 of 2 is baking at 10%.")
    page.evaluate("window.__sameDocument = true")

    step = kit.judged_step(
        live, stack.prometheus, kit.policy(stack.environments), 0, 10, start, end
    )
    kit.append(stack.ledger, step)
    row = page.locator('table.looks tbody tr[data-step="1"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    expect(row.locator(".badge")).to_have_text("pass")
    expect(page.locator(".why .words")).to_have_text("Running: step 2 of 2 is baking at 50%.")
    expect(page.locator("ol.timeline li.running")).to_contain_text("step 2: weight 50%")
    shoot(page, "running-delivery")

    kit.append(stack.ledger, kit.finished(live, [step], Outcome.PROMOTED, "every step passed", end))
    expect(page.locator("#outcome")).to_have_text("promoted", timeout=WAIT_MS)
    expect(page.locator(".live")).to_have_count(0)
    expect(page.locator(".why .words")).to_contain_text("Promoted: good-2 is now stable.")
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded


def test_platform_dashboard_drawn_from_prometheus(stack: kit.Stack, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{stack.console}/dashboards")
    expect(page.get_by_role("heading", name="The platform's dashboards")).to_be_visible()
    page.get_by_role("link", name="Image service - golden signals per tenant").click()
    expect(page).to_have_url(f"{stack.console}/dashboards/image-service-golden")
    page.get_by_role("link", name="5 min", exact=True).click()
    expect(page).to_have_url(f"{stack.console}/dashboards/image-service-golden?minutes=5")
    traffic = page.locator('article.panel[data-panel="Traffic (req/s)"]')
    expect(traffic.locator("polyline.line")).to_have_count(4)  # one line per tenant
    expect(traffic.locator("ul.legend")).to_contain_text("globex")
    expect(traffic.locator(".empty")).to_have_count(0)
    errors = page.locator('article.panel[data-panel="Errors (5xx ratio)"]')
    expect(errors.locator("polyline.line")).to_have_count(4)
    shoot(page, "dashboard", full=False)


def _mean_y(points: str | None) -> float:
    ys = [float(p.split(",")[1]) for p in (points or "").split()]
    assert ys, "the line has no points"
    return sum(ys) / len(ys)
