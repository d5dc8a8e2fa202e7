"""Paying a shop from its QR in a real browser, in the demo (sandbox) configuration:
the pay page with points, the sandbox cashier, the order page once the notification
has booked the payment, and the push in the inbox. A bad amount is refused on the page."""

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.utils import translation

from coupons.models import Coupon, CouponRedemption
from members import ledger, web_auth
from payments.models import Order, PaymentNotification
from tests.browser.conftest import PHONE, browser_test
from tests.coupons.conftest import issue, make_template
from tests.factories import assert_ledger_invariants, make_member, make_store

pytestmark = [*browser_test, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def sandbox(settings):
    settings.O2O_SANDBOX = True


@pytest.fixture
def store():
    store = make_store(earn_rate_bp=100)  # 1 point a yuan paid
    store.name, store.unit = "星巴克 Starbucks", "L1-012"
    store.save()
    store.plaza.name = "北京CBD万达广场"
    store.plaza.save()
    return store


@pytest.fixture
def shopper():
    member = make_member(nickname="演示顾客 1")
    ledger.points_grant(member=member, points=1_000, reason="welcome gift", idempotency_key="pay:welcome")
    return member


def log_in(page, live_server, member):
    """The session a login would make, put straight into the browser."""
    session = SessionStore()
    session[web_auth.SESSION_MEMBER] = member.pk
    session.create()
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session.session_key, "url": live_server.url}])


def in_page_language(page, text: str) -> str:
    """``text`` as the page shows it in its language (translated or not)."""
    with translation.override(page.locator("html").get_attribute("lang")):
        return translation.gettext(text)


def assert_fits_the_phone(page):
    """Nothing wider than the screen: no sideways scrolling."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"]


def submit_pay_form(page, *, amount: str, points: str = ""):
    page.fill("#amount", amount)
    if points:
        page.fill("#points", points)
    page.check("input[name=channel][value=sandbox]")
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.click("#pay-submit")
    return posted.value


def test_paying_68_yuan_with_500_points_through_the_sandbox_cashier_earns_63_points(page, live_server, store, shopper, screenshot):
    log_in(page, live_server, shopper)
    page.goto(f"/m/pay/{store.code}/")
    assert page.get_by_role("heading", name="星巴克 Starbucks").is_visible()
    assert page.get_by_text("北京CBD万达广场 · L1-012").is_visible()
    assert page.locator("#points").get_attribute("max") == "1000"
    page.fill("#amount", "68.00")
    page.fill("#points", "500")
    assert_fits_the_phone(page)
    screenshot("pay")

    response = submit_pay_form(page, amount="68.00", points="500")

    assert response.status == 302
    order = Order.objects.get()
    page.wait_for_url(f"{live_server.url}/payments/sandbox/{order.out_trade_no}/?next=/m/pay/orders/{order.out_trade_no}/")
    assert (order.status, order.amount_fen, order.points_used, order.payable_fen) == ("created", 6_800, 500, 6_300)
    # The points are held while the shopper pays.
    assert ledger.member_points_balance(member=shopper) == 500
    assert page.locator("#cashier-amount").inner_text() == "63.00"
    assert page.locator("#cashier-pay").inner_text() == in_page_language(page, "Pay ¥%(amount)s") % {"amount": "63.00"}
    assert_fits_the_phone(page)
    screenshot("cashier")

    page.click("#cashier-pay")

    page.wait_for_url(f"**/m/pay/orders/{order.out_trade_no}/")
    order.refresh_from_db()
    assert order.status == "paid" and order.earn.points == 63
    assert page.locator("#order").get_attribute("data-status") == "paid"
    assert page.locator("#order-status").inner_text() == in_page_language(page, "Paid")
    assert page.locator("#order-points-used").inner_text() == "500"
    assert page.locator("#order-points-earned").inner_text() == "63"
    assert page.locator("#points-balance").inner_text() == "563" == str(ledger.member_points_balance(member=shopper))
    assert "68.00" in page.locator("dl").inner_text() and "63.00" in page.locator("dl").inner_text()
    assert PaymentNotification.objects.get().outcome == "processed"
    assert_fits_the_phone(page)
    screenshot("order")

    page.goto("/m/inbox/")
    paid = page.locator(".rows li", has_text="支付成功，获得 63 积分")
    assert paid.count() == 1
    assert "积分抵扣 500" in paid.inner_text() and "当前积分 563" in paid.inner_text()
    screenshot("inbox")
    assert_ledger_invariants()


def test_paying_120_yuan_with_a_20_yuan_coupon_and_500_points_pays_95_and_redeems_the_coupon(
    page, live_server, store, shopper, screenshot
):
    coupon = issue(make_template(name="满100减20"), shopper)  # the mall's, accepted everywhere
    log_in(page, live_server, shopper)
    page.goto(f"/m/pay/{store.code}/")
    assert page.get_by_text("满100减20").is_visible()
    page.fill("#amount", "120")
    page.fill("#points", "500")
    page.check(f'input[name=coupon][value="{coupon.code}"]')
    # The page shows the discount and what is left to pay before anything is sent.
    assert page.locator("#coupon-discount").inner_text() == in_page_language(
        page, "Coupon: −¥%(discount)s, left to pay ¥%(payable)s") % {"discount": "20.00", "payable": "95.00"}
    assert_fits_the_phone(page)
    screenshot("pay-coupon")

    response = submit_pay_form(page, amount="120", points="500")

    assert response.status == 302
    order = Order.objects.get()
    assert (order.coupon, order.coupon_discount_fen, order.points_used, order.payable_fen) == (coupon, 2_000, 500, 9_500)
    page.wait_for_url(f"**/payments/sandbox/{order.out_trade_no}/**")
    assert page.locator("#cashier-amount").inner_text() == "95.00"

    page.click("#cashier-pay")

    page.wait_for_url(f"**/m/pay/orders/{order.out_trade_no}/")
    order.refresh_from_db()
    assert order.status == "paid" and order.earn.points == 95
    assert "满100减20" in page.locator("#order-coupon").inner_text()
    assert "20.00" in page.locator("#order-coupon").inner_text()
    assert page.locator("#order-paid").inner_text() == "¥95.00"
    assert Coupon.objects.get(pk=coupon.pk).status == Coupon.Status.REDEEMED
    assert CouponRedemption.objects.get().discount_fen == 2_000
    assert_fits_the_phone(page)
    screenshot("order-coupon")
    assert_ledger_invariants()


@pytest.mark.parametrize("amount", ["abc", "0", "1.234"])
def test_a_bad_amount_is_refused_on_the_page_and_makes_no_order(page, live_server, store, shopper, screenshot, amount):
    log_in(page, live_server, shopper)
    page.goto(f"/m/pay/{store.code}/")

    response = submit_pay_form(page, amount=amount)

    assert response.status == 400
    error = page.locator("#pay-error")
    assert error.is_visible()
    assert error.inner_text() == in_page_language(page, "Enter the amount in yuan, e.g. 68 or 68.50.")
    assert page.locator("#amount").input_value() == amount  # kept for the shopper to correct
    assert not Order.objects.exists()
    assert ledger.member_points_balance(member=shopper) == 1_000
    screenshot("error")
