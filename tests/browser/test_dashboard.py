"""The staff dashboards on the admin index in a real browser: an operator signs in and
sees the cards, the three charts drawn by the vendored Chart.js, the filters and the
export; a plaza filter narrows the figures. Screenshots at desktop and phone sizes."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from backoffice.dashboards import refresh
from members import checkin, ledger, services
from members.models import Member, Store
from payments import services as sales
from tests.browser.conftest import PHONE, SCREENS_DIR, browser_test

pytestmark = [*browser_test, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-operator-password-7"


@pytest.fixture
def mall():
    """Two plazas and three weeks of check-ins, sales, refunds and redemptions."""
    now = timezone.now()
    east = services.plaza_create(code="east", name="东区广场 East")
    west = services.plaza_create(code="west", name="西区广场 West")
    tea, tea_east, _, _ = services.merchant_create(name="喜茶 Heytea", plaza=east, store_code="tea-east")
    noodles, noodles_west, _, _ = services.merchant_create(name="面馆 Noodles", plaza=west, store_code="noodles-west")
    Store.objects.create(merchant=tea, plaza=west, code="tea-west", name="喜茶 West")
    members = [
        services.member_create(join_channel=Member.Channel.WECHAT, plaza=east if n % 3 else west) for n in range(12)
    ]
    for days_ago in range(20, -1, -1):
        moment = now - timedelta(days=days_ago, hours=1)
        for n, member in enumerate(members):
            if (n + days_ago) % 4 == 0:
                checkin.checkin(member=member, plaza=east if n % 2 else west, push=False, at=moment)
            if (n * 7 + days_ago) % 5 == 0:
                store = tea_east if n % 2 else noodles_west
                sale = sales.purchase_record(
                    merchant=store.merchant, store=store, member=member, amount_fen=1_000 * (n + days_ago % 7 + 1),
                    idempotency_key=f"sale-{days_ago}-{n}", at=moment, push=False,
                )
                if n == 3:
                    sales.purchase_refund(purchase=sale, amount_fen=500, idempotency_key=f"refund-{days_ago}", at=moment)
        if days_ago % 6 == 0:
            ledger.points_redeem(member=members[1], store=tea_east, points=20, idempotency_key=f"redeem-{days_ago}", at=moment)
    refresh.dashboards_refresh(days=30)
    User.objects.create_superuser("operator", password=PASSWORD)
    return {"east": east, "west": west, "tea": tea, "noodles": noodles}


def sign_in(page):
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard")


def charts_drawn(page) -> None:
    for chart in ("chart-members", "chart-sales", "chart-points"):
        page.wait_for_selector(f"#{chart}[data-drawn='1']")
        box = page.locator(f"#{chart}").bounding_box()
        assert box["width"] > 100 and box["height"] > 100, chart


@pytest.fixture
def desktop(browser, live_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN", base_url=live_server.url)
    context.set_default_timeout(5_000)
    page = context.new_page()
    yield page
    context.close()


def test_operator_sees_the_dashboard_with_charts(desktop, mall):
    errors = []
    desktop.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(desktop)
    charts_drawn(desktop)
    assert not errors
    sales_card = desktop.locator("[data-figure='sales_fen'] .dashboard-card-value").inner_text()
    assert sales_card.startswith("¥") and sales_card != "¥0.00"
    assert desktop.locator("[data-figure='liability']").is_visible()
    assert desktop.locator("#dashboard-csv").is_visible()
    assert desktop.locator("#dashboard-freshness").inner_text().strip()
    assert desktop.locator("#dashboard-segments").is_visible()
    SCREENS_DIR.mkdir(parents=True, exist_ok=True)
    desktop.screenshot(path=str(SCREENS_DIR / "dashboard-desktop.png"), full_page=True)

    # One plaza: the mall-wide points leave, the figures narrow.
    desktop.select_option("#dashboard-filters select[name=plaza]", str(mall["west"].pk))
    desktop.click("#dashboard-filters button[type=submit]")
    desktop.wait_for_url(f"**plaza={mall['west'].pk}**")
    charts_drawn(desktop)
    assert desktop.locator("[data-figure='liability']").count() == 0
    west_sales = desktop.locator("[data-figure='sales_fen'] .dashboard-card-value").inner_text()
    assert west_sales != sales_card
    desktop.screenshot(path=str(SCREENS_DIR / "dashboard-desktop-plaza.png"), full_page=True)

    # The export answers a CSV of the same filters.
    with desktop.expect_download() as download:
        desktop.click("#dashboard-csv")
    assert download.value.suggested_filename.endswith("_plaza-west.csv")


def test_dashboard_on_a_phone(browser, live_server, mall):
    context = browser.new_context(**PHONE, locale="zh-CN", base_url=live_server.url)
    context.set_default_timeout(5_000)
    page = context.new_page()
    try:
        sign_in(page)
        charts_drawn(page)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        SCREENS_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENS_DIR / "dashboard-phone.png"), full_page=True)
        assert overflow <= 1
    finally:
        context.close()
