"""Browser tests: Chromium driven through Playwright (sync API) against a live server.

Test modules here carry ``pytestmark = browser_test`` (the ``browser`` marker, and a
skip when Chromium is not installed: .ci/run installs it). Each page a test visits
is also saved as a screenshot under /tmp/screens/ (O2O_SCREENS_DIR), outside the repo,
for a person to look at.
"""

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("O2O_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENS_DIR = Path(os.environ.get("O2O_SCREENS_DIR", "/tmp/screens"))
browser_test = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]
# A mid-range phone.
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Playwright's sync API keeps an event loop running
    on this thread while it lives, which Django's ORM takes for async code (the ORM calls
    of these tests are ordinary synchronous ones) and which would trouble any later test
    that runs an event loop: so it lives no longer than the module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    """A phone-sized page in a fresh context, Chinese by default, on the live server."""
    context = browser.new_context(**PHONE, locale="zh-CN", base_url=live_server.url)
    context.set_default_timeout(5_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot(page, request):
    """screenshot("card") saves the whole page as /tmp/screens/<test>-card.png."""
    SCREENS_DIR.mkdir(parents=True, exist_ok=True)
    test = request.node.name.removeprefix("test_")

    def take(name: str) -> Path:
        path = SCREENS_DIR / f"{test}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
