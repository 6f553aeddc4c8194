"""The page in a real browser: Debian's chromium, headless, driven by
Playwright, loads the dashboard from the service against a real server
with data. Its numbers are QUERY's and TOP's; after an INGEST the page
shows the change without a reload; it is usable by keyboard; a
screenshot is saved under target/dashboard/."""

import os
import time

import pytest
from playwright.sync_api import expect, sync_playwright

import harness
from conftest import CLICK, VIEW, ingest

METRIC = "ldp_add_to_cart_ctr"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.path.join(harness.ROOT, "target", "dashboard")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} missing: scripts/install-deps.sh installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors


def card(page, metric=METRIC):
    return page.locator(f'section.card[data-metric="{metric}"]')


def total_of(client, listing="*", start="-6d", end="today"):
    rows = client.execute_command("LISTINGSTATS.QUERY", METRIC, start, end, listing,
                                  "GROUPBY", "TOTAL")
    return (rows[0][3], rows[0][4]) if rows else (0, 0)


def shown_total(page):
    t = card(page).locator(".total")
    return int(t.get_attribute("data-numerator")), int(t.get_attribute("data-denominator"))


def test_the_page_shows_the_module_s_numbers_and_follows_an_ingest(server, service, page):
    c = server.client()
    page.goto(service.url + "/")
    expect(card(page).locator(".total .value")).not_to_have_text("", timeout=20000)
    assert shown_total(page) == total_of(c)
    # The top tables are TOP's answers, in order.
    top = c.execute_command("LISTINGSTATS.TOP", METRIC, "-6d", "today", 10)
    expect(card(page).locator(".top tbody tr")).to_have_count(len(top))
    shown = card(page).locator(".top tbody tr td:first-child").all_inner_texts()
    assert shown == [r[0].decode() for r in top]
    wilson = c.execute_command("LISTINGSTATS.TOP", METRIC, "-6d", "today", 10, "RANK", "WILSON")
    shown = card(page).locator(".wilson tbody tr td:first-child").all_inner_texts()
    assert shown == [r[0].decode() for r in wilson]
    # Per day and per hour charts are drawn (Chart.js, vendored).
    assert page.evaluate("typeof Chart") == "function"
    assert card(page).locator(".hourly").is_visible()
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, "page.png"), full_page=True)

    # An INGEST now: the page changes without a reload.
    page.evaluate("window.notReloaded = true")
    before = shown_total(page)
    now = int(time.time())
    ingest(c, [{"name": VIEW, "listingIds": ["2101"], "message_date": now}] * 7
           + [{"name": CLICK, "listingIds": ["2101"], "message_date": now}] * 5)
    want = total_of(c)
    assert want == (before[0] + 5, before[1] + 7)
    page.wait_for_function(
        f"document.querySelector('section.card[data-metric=\"{METRIC}\"] .total')"
        f".dataset.numerator === '{want[0]}'", timeout=20000)
    assert shown_total(page) == want
    assert page.evaluate("window.notReloaded") is True


def test_a_listing_and_a_range_by_keyboard(server, service, page):
    c = server.client()
    page.goto(service.url + "/")
    expect(card(page).locator(".total .value")).not_to_have_text("", timeout=20000)
    page.focus("#from")
    page.keyboard.type("-2d")
    page.keyboard.press("Tab")
    page.keyboard.type("today")
    page.keyboard.press("Tab")
    page.keyboard.type("2105")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("listing 2105", timeout=20000)
    page.wait_for_function(
        f"document.querySelector('section.card[data-metric=\"{METRIC}\"] .total')"
        f"?.dataset.numerator === '{total_of(c, '2105', '-2d')[0]}'", timeout=20000)
    assert shown_total(page) == total_of(c, "2105", "-2d")
    assert "listing=2105" in page.url


def test_a_bad_range_is_said_on_the_page(server, service, page):
    page.goto(service.url + "/?from=2015-02-30")
    expect(page.locator("#error")).to_contain_text("from must be a date", timeout=20000)
    expect(page.locator("#error")).to_be_visible()
