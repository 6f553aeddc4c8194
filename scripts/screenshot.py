"""A screenshot of a dashboard page in headless Chromium (Debian's), for
the docs:

    scripts/demo.sh --keep
    target/dashenv/bin/python scripts/screenshot.py \
        'http://127.0.0.1:8090/?from=2015-12-28&to=2016-01-03' docs/img/dashboard.png"""

import sys

from playwright.sync_api import sync_playwright


def main(url, path, width=1366, height=900):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        # The first message of the stream drew the cards.
        page.wait_for_selector("section.card .total .value:not(:empty)", timeout=30000)
        page.wait_for_timeout(500)
        page.screenshot(path=path, full_page=True)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
