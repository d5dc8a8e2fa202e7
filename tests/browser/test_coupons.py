"""The coupon pages on a phone, in a real browser: my coupons with the free ones and the
points mall, claiming one, exchanging points for one (the shopper confirms), and a
coupon's till code that rotates by itself and gives way once the coupon is used."""

import pytest

from coupons import codes
from coupons.models import Coupon, CouponTemplate
from coupons.services import coupon_issue, coupon_redeem
from members import ledger
from tests.browser.conftest import browser_test
from tests.browser.test_pay import assert_fits_the_phone, log_in
from tests.factories import assert_ledger_invariants, make_member, make_store

pytestmark = [*browser_test, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def store():
    store = make_store()
    store.name = "星巴克 Starbucks"
    store.save()
    store.merchant.name = "星巴克"
    store.merchant.save()
    return store


@pytest.fixture
def shopper():
    member = make_member(nickname="演示顾客 1")
    ledger.points_grant(member=member, points=1_000, reason="welcome gift", idempotency_key="coupons:welcome")
    return member


def template(**fields) -> CouponTemplate:
    fields.setdefault("valid_days", 30)
    return CouponTemplate.objects.create(**fields)


@pytest.fixture
def offers(store, shopper):
    """What a demo shopper sees: a coupon of theirs, a used one, a free one, two in the points mall."""
    mine = template(name="星巴克满100减20", kind="cash_off", face_value_fen=2_000, min_spend_fen=10_000, merchant=store.merchant,
                    funded_by="merchant")
    used = template(name="周末85折", kind="percent_off", percent_off_bp=1_500, max_discount_fen=3_000)
    coupon_issue(template=mine, member=shopper, via=Coupon.Via.ADMIN)
    coupon_redeem(coupon=coupon_issue(template=used, member=shopper, via=Coupon.Via.ADMIN), merchant=store.merchant,
                  store=store.__class__.objects.get(pk=store.pk), amount_fen=10_000, idempotency_key="t",
                  authorised_by="coupon_code")
    return {
        "free": template(name="新人免费咖啡券", kind="gift", gift_description="中杯拿铁一杯", claimable=True, total_quota=500),
        "mall": template(name="10元代金券", kind="voucher", face_value_fen=1_000, points_price=300, total_quota=100,
                         issued_count=12),
        "dear": template(name="100元代金券", kind="voucher", face_value_fen=10_000, points_price=5_000),
    }


def test_my_coupons_claim_a_free_one_and_show_its_till_code(page, live_server, shopper, offers, screenshot):
    log_in(page, live_server, shopper)
    page.goto("/m/")
    page.locator(".menu a[href='/m/coupons/']").click()
    page.wait_for_url("**/m/coupons/")
    assert page.locator("#my-coupons > .tickets .ticket").count() == 1
    assert "星巴克满100减20" in page.locator("#my-coupons").inner_text()
    assert not page.locator("#past-coupons .ticket").first.is_visible()  # collapsed
    assert page.locator("#points-balance").inner_text() == "1000"
    assert page.locator("#points-mall li[data-template='%d'] button[disabled]" % offers["dear"].pk).count() == 1
    assert_fits_the_phone(page)
    screenshot("list")

    page.locator("#free-coupons li[data-template='%d'] button" % offers["free"].pk).click()

    page.wait_for_url(lambda url: url.endswith("/?new=claimed"))
    coupon = Coupon.objects.get(template=offers["free"])
    assert coupon.member_id == shopper.pk and coupon.issued_via == "claim"
    assert page.locator("#coupon-new").is_visible()
    code = page.locator("#coupon-code").get_attribute("data-code")
    assert codes.coupon_code_check(code=code, caller="browser").pk == coupon.pk
    assert page.locator("#coupon-code .qr svg").is_visible() and page.locator("#coupon-code .barcode svg").is_visible()
    assert_fits_the_phone(page)
    screenshot("coupon")


def test_exchanging_points_asks_first_then_shows_the_balance_after(page, live_server, shopper, offers, screenshot):
    log_in(page, live_server, shopper)
    page.goto("/m/coupons/")
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.locator("#points-mall li[data-template='%d'] button" % offers["mall"].pk).click()
    assert questions and "10元代金券" in questions[0] and "300" in questions[0]
    assert not Coupon.objects.filter(template=offers["mall"]).exists()  # said no: nothing spent

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#points-mall li[data-template='%d'] button" % offers["mall"].pk).click()

    page.wait_for_url(lambda url: url.endswith("/?new=exchanged"))
    assert Coupon.objects.get(template=offers["mall"]).issued_via == "points"
    assert ledger.member_points_balance(member=shopper) == 700
    assert "700" in page.locator("#coupon-new").inner_text()
    assert_fits_the_phone(page)
    screenshot("exchanged")
    assert_ledger_invariants()


def test_the_till_code_refreshes_itself_and_gives_way_once_used(page, live_server, store, shopper, offers):
    log_in(page, live_server, shopper)
    coupon = Coupon.objects.get(member=shopper, status=Coupon.Status.ISSUED)
    page.clock.install()
    page.goto(f"/m/coupons/{coupon.pk}/")
    assert page.locator("#coupon-code").is_visible()

    with page.expect_response(lambda response: response.url.endswith(f"/m/coupons/{coupon.pk}/code.json")) as fetched:
        page.clock.run_for(61_000)
    assert fetched.value.status == 200
    page.wait_for_function(
        "code => document.getElementById('coupon-code').getAttribute('data-code') === code", arg=fetched.value.json()["code"]
    )

    coupon_redeem(coupon=coupon, merchant=store.merchant, store=store, amount_fen=12_000, idempotency_key="till",
                  authorised_by="coupon_code")
    with page.expect_navigation():
        page.clock.run_for(61_000)
    assert page.locator("#coupon-state").is_visible()
    assert page.locator("#coupon-code").count() == 0


def test_a_claim_qr_asks_a_visitor_to_log_in_then_comes_back_to_claim(page, live_server, settings, screenshot):
    from coupons import claims
    from members.identity import member_for_identity
    from members.models import Identity, Member

    settings.O2O_SANDBOX = True  # the demo login
    shopper = member_for_identity(channel=Identity.Channel.WECHAT_OPENID, external_id="demo-openid-0001",
                                  join_channel=Member.Channel.WECHAT).member
    poster = template(name="开业扫码礼", kind="cash_off", face_value_fen=1_000, min_spend_fen=5_000)  # not listed
    path = f"/m/coupons/claim/{claims.template_claim_code_ensure(poster)}/"

    page.goto(path)
    page.wait_for_url(lambda url: "/m/login/?next=" in url)
    page.locator("a[href^='/m/login/demo/']").click()
    page.locator("button[value='demo-openid-0001']").click()

    page.wait_for_url(f"**{path}")
    assert "开业扫码礼" in page.locator("#claim h1").inner_text()
    assert_fits_the_phone(page)
    screenshot("claim")
    page.click("#claim-submit")
    page.wait_for_url(lambda url: url.endswith("/?new=claimed"))
    assert Coupon.objects.get().member_id == shopper.pk and page.locator("#coupon-code").is_visible()
