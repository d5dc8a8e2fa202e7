"""The tenants' admin in a real browser: a tenant signs in and reads its landing page, in Chinese."""

import pytest

from backoffice import services
from tests.backoffice.conftest import PASSWORD
from tests.browser.conftest import SCREENS_DIR, browser, browser_test  # noqa: F401  (the browser fixture)
from tests.payments.conftest import build_shop
from tests.factories import make_member

pytestmark = [*browser_test, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def desktop(browser, live_server):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", base_url=live_server.url)
    context.set_default_timeout(5_000)
    page = context.new_page()
    yield page
    context.close()


def test_a_tenant_signs_in_and_sees_its_figures(desktop):
    shop = build_shop(name="星巴克")
    for amount in (3_500, 4_200):
        assert shop.api.purchase(store_code=shop.store.code, amount_fen=amount, member=make_member()).status_code == 201
    services.merchant_staff_create(merchant=shop.merchant, username="starbucks-till", password=PASSWORD)

    desktop.goto("/merchant/")
    desktop.fill("#id_username", "starbucks-till")
    desktop.fill("#id_password", PASSWORD)
    desktop.click("input[type=submit]")

    desktop.wait_for_selector("#daily")
    assert "星巴克" in desktop.content()
    assert "77.00" in desktop.inner_text("#daily")  # today's sales, ¥35 + ¥42
    SCREENS_DIR.mkdir(parents=True, exist_ok=True)
    desktop.screenshot(path=str(SCREENS_DIR / "backoffice-index.png"), full_page=True)
