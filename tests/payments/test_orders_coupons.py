"""Coupons on orders paid by scanning a shop's QR: the discount first, then points; the
coupon held while unpaid, redeemed once paid, given back when the order closes or is
refunded in full; its discount in the merchant's settlement by who funds it."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from coupons import services as coupon_services
from coupons.models import Coupon, CouponEvent, CouponRedemption, CouponTemplate
from members import ledger
from members.models import PointsTransaction
from members.web_auth import SESSION_MEMBER
from payments import orders, reports, tasks
from payments.gateways import sandbox
from payments.models import Order, SandboxTrade
from tests.concurrency import race
from tests.coupons.conftest import coupon_code, issue, make_template, window
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import Api, build_shop, grant
from tests.payments.orders_support import Shopper, order_pushes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sandbox_on")]

CASH_OFF = CouponTemplate.Kind.CASH_OFF  # make_template's default: ¥20 off ¥100
MALL, MERCHANT = CouponTemplate.FundedBy.MALL, CouponTemplate.FundedBy.MERCHANT


@pytest.fixture
def sandbox_on(settings):
    settings.O2O_SANDBOX = True


def _notify(headers, body):
    return Client().post("/payments/notify/sandbox/", data=body, content_type="application/json", headers=headers)


def pay(out_trade_no: str):
    answer = _notify(*sandbox.trade_pay(out_trade_no=out_trade_no))
    assert answer.status_code == 200, answer.content
    return Order.objects.get(out_trade_no=out_trade_no)


def balance(member) -> int:
    return ledger.member_points_balance(member=member)


def status_of(coupon: Coupon) -> str:
    return Coupon.objects.get(pk=coupon.pk).status


def kinds(coupon: Coupon) -> list[str]:
    return list(CouponEvent.objects.filter(coupon=coupon).order_by("pk").values_list("kind", flat=True))


def order_with_coupon(member, shop, coupon, *, amount_fen=12_000, points=None, shopper=None):
    response = (shopper or Shopper(member)).order(
        store_code=shop.store.code, amount_fen=amount_fen, points_to_use=points, coupon_code=coupon.code
    )
    assert response.status_code == 201, response.content
    return response.json()


def statement(shop, when=None) -> dict:
    period = (when or timezone.localdate()).strftime("%Y-%m")
    response = Api(shop.raw_key).get("/api/v1/settlements/", {"period": period})
    assert response.status_code == 200, response.content
    return response.json()


# --- paying with a coupon -------------------------------------------------------------------


def test_a_coupon_comes_off_first_is_held_until_paid_and_is_redeemed_once_with_its_funder():
    shop = build_shop()
    member = make_member()
    grant(member, 1_000)
    coupon = issue(make_template(), member)  # the mall's ¥20 off ¥100

    body = order_with_coupon(member, shop, coupon, amount_fen=12_000, points=500)

    assert (body["status"], body["coupon_discount_fen"], body["points_used"], body["payable_fen"]) == (
        "created", 2_000, 500, 9_500)
    assert body["coupon_code"] == coupon.code
    order = Order.objects.get(out_trade_no=body["out_trade_no"])
    assert order.coupon == coupon and SandboxTrade.objects.get().amount_fen == 9_500
    assert status_of(coupon) == Coupon.Status.HELD and balance(member) == 500
    held = CouponEvent.objects.get(coupon=coupon, kind=CouponEvent.Kind.HELD)
    assert held.detail["order"] == order.out_trade_no and held.detail["discount_fen"] == 2_000
    assert not CouponRedemption.objects.exists()

    order = pay(order.out_trade_no)

    assert order.status == "paid"
    assert status_of(coupon) == Coupon.Status.REDEEMED
    redemption = CouponRedemption.objects.get()
    assert (redemption.coupon, redemption.merchant, redemption.store) == (coupon, shop.merchant, shop.store)
    assert (redemption.amount_fen, redemption.discount_fen, redemption.funded_by) == (12_000, 2_000, MALL)
    assert (redemption.idempotency_key, redemption.order_ref, redemption.authorised_by) == (
        f"order:{order.out_trade_no}", order.out_trade_no, "order")
    # Points are earned on the ¥95 paid in cash only: 1 %.
    assert order.earn.points == 95 and balance(member) == 595
    assert kinds(coupon) == ["issued", "held", "redeemed"]
    assert Shopper(member).get(f"orders/{order.out_trade_no}/").json()["coupon_discount_fen"] == 2_000
    assert "优惠券减 ¥20.00，积分抵扣 500，实付 ¥95.00" in order_pushes(order)[0].body

    # The platform tells again: nothing moves twice.
    _notify(*sandbox.notification_for(SandboxTrade.objects.get(out_trade_no=order.out_trade_no)))
    assert CouponRedemption.objects.count() == 1 and kinds(coupon) == ["issued", "held", "redeemed"]
    assert balance(member) == 595 and len(order_pushes(order)) == 1
    assert_ledger_invariants()


def test_a_merchants_own_coupon_is_redeemed_as_merchant_funded():
    shop = build_shop()
    member = make_member()
    coupon = issue(make_template(merchant=shop.merchant, kind=CouponTemplate.Kind.PERCENT_OFF), member)  # 15 % ≤ ¥30

    body = order_with_coupon(member, shop, coupon, amount_fen=10_000)
    pay(body["out_trade_no"])

    assert (body["coupon_discount_fen"], body["payable_fen"]) == (1_500, 8_500)
    assert CouponRedemption.objects.get().funded_by == MERCHANT


def test_a_coupon_and_points_paying_the_whole_bill_complete_the_order_at_once():
    shop = build_shop()
    member = make_member()
    grant(member, 10_000)
    coupon = issue(make_template(), member)

    body = order_with_coupon(member, shop, coupon, amount_fen=10_000, points=8_000)

    assert (body["status"], body["payable_fen"], body["channel"], body["pay_params"]) == ("paid", 0, "points", {})
    assert status_of(coupon) == Coupon.Status.REDEEMED and CouponRedemption.objects.get().discount_fen == 2_000
    order = Order.objects.get()
    assert order.earn is None and balance(member) == 2_000 and len(order_pushes(order)) == 1
    assert not SandboxTrade.objects.exists()
    assert_ledger_invariants()


def test_a_voucher_worth_more_than_the_bill_pays_it_all_and_no_more():
    shop = build_shop()
    member = make_member()
    coupon = issue(make_template(kind=CouponTemplate.Kind.VOUCHER), member)  # ¥50

    body = order_with_coupon(member, shop, coupon, amount_fen=3_000)

    assert (body["status"], body["coupon_discount_fen"], body["payable_fen"]) == ("paid", 3_000, 0)
    assert CouponRedemption.objects.get().discount_fen == 3_000


def test_points_are_capped_at_what_the_coupon_leaves():
    shop = build_shop()
    member = make_member()
    grant(member, 20_000)
    coupon = issue(make_template(), member)

    response = Shopper(member).order(store_code=shop.store.code, amount_fen=10_000, points_to_use=8_001,
                                     coupon_code=coupon.code)

    assert (response.status_code, response.json()["code"], response.json()["max_points"]) == (
        400, "points_exceed_amount", 8_000)
    assert not Order.objects.exists() and status_of(coupon) == Coupon.Status.ISSUED and balance(member) == 20_000


# --- given back -------------------------------------------------------------------------------


def test_an_order_closed_unpaid_gives_the_coupon_back_for_another_order():
    shop = build_shop()
    member = make_member()
    grant(member, 1_000)
    coupon = issue(make_template(), member)
    first = order_with_coupon(member, shop, coupon, points=300)["out_trade_no"]

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 1

    order = Order.objects.get(out_trade_no=first)
    assert order.status == "closed" and order.coupon is None
    assert (order.coupon_code, order.coupon_discount_fen) == (coupon.code, 2_000)  # the record stays
    assert status_of(coupon) == Coupon.Status.ISSUED and balance(member) == 1_000
    released = CouponEvent.objects.get(coupon=coupon, kind=CouponEvent.Kind.RELEASED)
    assert released.detail["order"] == first

    second = order_with_coupon(member, shop, coupon)
    pay(second["out_trade_no"])
    assert status_of(coupon) == Coupon.Status.REDEEMED
    assert kinds(coupon) == ["issued", "held", "released", "held", "redeemed"]
    assert_ledger_invariants()


def test_a_coupon_whose_validity_ended_while_held_comes_back_and_then_expires():
    shop = build_shop()
    member = make_member()
    coupon = issue(make_template(**window(1, 0) | {"valid_until": timezone.now() + timedelta(minutes=5)}), member)
    out_trade_no = order_with_coupon(member, shop, coupon)["out_trade_no"]

    later = timezone.now() + timedelta(minutes=16)
    with time_machine.travel(later):
        orders.order_close(order=Order.objects.get(out_trade_no=out_trade_no))
        assert status_of(coupon) == Coupon.Status.ISSUED
        assert coupon_services.coupons_expire_due() == 1

    assert status_of(coupon) == Coupon.Status.EXPIRED


def test_a_trade_the_platform_refuses_to_open_gives_the_coupon_back(monkeypatch):
    from core.platforms import PlatformUnavailable
    from payments.gateways.sandbox import SandboxGateway

    def down(self, request):
        raise PlatformUnavailable("down")

    monkeypatch.setattr(SandboxGateway, "charge", down)
    shop = build_shop()
    member = make_member()
    coupon = issue(make_template(), member)

    response = Shopper(member).order(store_code=shop.store.code, amount_fen=12_000, coupon_code=coupon.code)

    assert response.status_code == 503
    assert Order.objects.get().status == "closed" and status_of(coupon) == Coupon.Status.ISSUED
    assert kinds(coupon) == ["issued", "held", "released"]


def test_a_payment_after_the_order_closed_is_refunded_and_does_not_redeem_the_coupon(django_capture_on_commit_callbacks):
    shop = build_shop()
    member = make_member()
    coupon = issue(make_template(), member)
    out_trade_no = order_with_coupon(member, shop, coupon)["out_trade_no"]
    # Closed here, but the close never reached the platform, where the shopper pays.
    orders._close(Order.objects.get(out_trade_no=out_trade_no), now=timezone.now(), kind="closed")

    with django_capture_on_commit_callbacks(execute=True):
        assert _notify(*sandbox.trade_pay(out_trade_no=out_trade_no)).status_code == 200

    order = Order.objects.get(out_trade_no=out_trade_no)
    assert order.status == "closed" and order.refunds.get().cash_fen == 10_000
    assert status_of(coupon) == Coupon.Status.ISSUED and not CouponRedemption.objects.exists()


# --- refused, with nothing moved --------------------------------------------------------------


def _refused(member, shop, coupon_or_code, *, amount_fen=12_000, points=None):
    code = coupon_or_code if isinstance(coupon_or_code, str) else coupon_or_code.code
    return Shopper(member).order(store_code=shop.store.code, amount_fen=amount_fen, points_to_use=points, coupon_code=code)


def test_another_members_coupon_is_not_found_and_nothing_moves():
    shop = build_shop()
    owner, thief = make_member(), make_member()
    grant(thief, 1_000)
    coupon = issue(make_template(), owner)

    api = _refused(thief, shop, coupon, points=100)
    page = Client()
    session = page.session
    session[SESSION_MEMBER] = thief.pk
    session.save()
    form = page.post(f"/m/pay/{shop.store.code}/", {"amount": "120", "points": "0", "coupon": coupon.code,
                                                      "channel": "sandbox"})

    assert (api.status_code, api.json()["code"]) == (404, "coupon_not_found")
    assert form.status_code == 400
    assert not Order.objects.exists() and not SandboxTrade.objects.exists()
    assert status_of(coupon) == Coupon.Status.ISSUED and kinds(coupon) == ["issued"]
    assert balance(thief) == 1_000


@pytest.mark.parametrize("case, status, code", [
    ("min_spend", 400, "min_spend_not_met"),
    ("other_merchants", 403, "store_not_accepted"),
    ("other_store", 403, "store_not_accepted"),
    ("expired", 409, "coupon_expired"),
    ("not_yet_valid", 409, "coupon_not_valid_yet"),
    ("not_with_points", 409, "coupon_not_combinable"),
    ("gift", 409, "coupon_gift_at_till"),
    ("no_discount", 409, "coupon_no_discount"),
    ("redeemed_at_till", 409, "coupon_used"),
    ("void", 409, "coupon_void"),
    ("held_by_another_order", 409, "coupon_held"),
    ("unknown", 404, "coupon_not_found"),
])
def test_a_coupon_that_cannot_be_used_is_refused_with_its_code_and_nothing_moves(case, status, code):
    shop, other = build_shop(), build_shop()
    member = make_member()
    grant(member, 1_000)
    amount, points, template = 12_000, None, {}
    if case == "min_spend":
        amount = 9_999
    elif case == "other_merchants":
        template = {"merchant": other.merchant}
    elif case == "other_store":
        template = {"stores": [other.store]}
    elif case == "not_yet_valid":
        template = {"valid_from": timezone.now() + timedelta(days=1), "valid_until": timezone.now() + timedelta(days=9)}
    elif case == "not_with_points":
        template, points = {"combines_with_points": False}, 100
    elif case == "gift":
        template = {"kind": CouponTemplate.Kind.GIFT}
    elif case == "no_discount":
        template, amount = {"kind": CouponTemplate.Kind.PERCENT_OFF}, 6  # 15 % of 6 fen is nothing
    coupon = issue(make_template(**template), member)
    if case == "expired":  # its validity ended a moment ago; the expiry job has not run yet
        now = timezone.now()
        Coupon.objects.filter(pk=coupon.pk).update(valid_from=now - timedelta(days=10), valid_until=now - timedelta(seconds=1))
    elif case == "redeemed_at_till":
        coupon_services.coupon_redeem(coupon=coupon, merchant=shop.merchant, store=shop.store, amount_fen=12_000,
                                      idempotency_key="till-1", authorised_by="coupon_code")
    elif case == "void":
        coupon_services.coupon_void(coupon=coupon, reason="test")
    elif case == "held_by_another_order":
        order_with_coupon(member, shop, coupon)
    before = (Order.objects.count(), SandboxTrade.objects.count(), status_of(coupon), kinds(coupon), balance(member))

    response = _refused(member, shop, "NO-SUCH-CODE" if case == "unknown" else coupon, amount_fen=amount, points=points)

    assert (response.status_code, response.json()["code"]) == (status, code), response.content
    assert (Order.objects.count(), SandboxTrade.objects.count(), status_of(coupon), kinds(coupon), balance(member)) == before


def test_a_coupon_needs_a_signed_in_shopper():
    shop = build_shop()
    member = make_member()
    coupon = issue(make_template(), member)

    with pytest.raises(orders.ApplicationError) as refused:
        orders.order_create(store=shop.store, amount_fen=12_000, channel="sandbox", client=Order.Client.NATIVE,
                            site_url="", coupon_code=coupon.code)

    assert refused.value.code == "shopper_required"
    assert status_of(coupon) == Coupon.Status.ISSUED and not Order.objects.exists()


def test_a_held_coupon_cannot_be_redeemed_at_a_till_or_voided():
    shop = build_shop()
    member = make_member()
    coupon = issue(make_template(), member)
    order_with_coupon(member, shop, coupon)

    with pytest.raises(coupon_services.CouponHeld):
        coupon_services.coupon_redeem(coupon=Coupon.objects.get(pk=coupon.pk), merchant=shop.merchant, store=shop.store,
                                      amount_fen=12_000, idempotency_key="till-1", authorised_by="coupon_code")
    with pytest.raises(coupon_services.CouponHeld):
        coupon_services.coupon_void(coupon=Coupon.objects.get(pk=coupon.pk), reason="test")

    assert status_of(coupon) == Coupon.Status.HELD and not CouponRedemption.objects.exists()


# --- refunds ----------------------------------------------------------------------------------


def _paid_with_coupon(*, funded_by_merchant=False, points=500):
    shop = build_shop()
    member = make_member()
    grant(member, 1_000)
    template = make_template(merchant=shop.merchant) if funded_by_merchant else make_template()
    coupon = issue(template, member)
    order = pay(order_with_coupon(member, shop, coupon, amount_fen=12_000, points=points)["out_trade_no"])
    return shop, member, coupon, order


def test_a_full_refund_gives_back_what_was_paid_and_the_coupon_and_takes_it_out_of_settlement():
    shop, member, coupon, order = _paid_with_coupon()
    assert statement(shop)["coupons_mall_funded_fen"] == 2_000
    pos = Api(shop.raw_key)

    too_much = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 12_001})
    refund = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 12_000})

    assert (too_much.status_code, too_much.json()["code"]) == (409, "refund_exceeds_order")
    assert refund.status_code == 201, refund.content
    # The ¥95 paid in cash and the 500 points come back, never the coupon's ¥20.
    assert (refund.json()["status"], refund.json()["cash_fen"], refund.json()["points"]) == ("succeeded", 9_500, 500)
    assert SandboxTrade.objects.get(out_trade_no=order.out_trade_no).refunded_fen == 9_500
    order.refresh_from_db()
    assert order.status == "refunded" and order.coupon is None and order.coupon_code == coupon.code
    assert balance(member) == 1_000
    assert status_of(coupon) == Coupon.Status.ISSUED
    fresh = Coupon.objects.get(pk=coupon.pk)
    assert fresh.redeemed_at is None and fresh.redeemed_store is None
    assert CouponRedemption.objects.get().reversed_at is not None
    assert kinds(coupon) == ["issued", "held", "redeemed", "released"]
    figures = statement(shop)
    assert figures["coupons_mall_funded_fen"] == 0
    assert figures["total_due_fen"] == figures["net_fen"] + figures["payments_due_fen"]
    assert_ledger_invariants()


def test_a_coupon_given_back_by_a_refund_can_be_used_again_and_counts_once_in_settlement():
    shop, member, coupon, order = _paid_with_coupon(points=0)
    Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 12_000})
    assert status_of(coupon) == Coupon.Status.ISSUED

    again = pay(order_with_coupon(member, shop, coupon, amount_fen=12_000, points=0)["out_trade_no"])

    assert again.status == "paid" and again.coupon_discount_fen == 2_000
    redemptions = CouponRedemption.objects.filter(coupon=coupon).order_by("pk")
    assert [r.reversed_at is None for r in redemptions] == [False, True]
    assert status_of(coupon) == Coupon.Status.REDEEMED
    assert statement(shop)["coupons_mall_funded_fen"] == 2_000  # + 2,000 − 2,000 + 2,000
    # Redeemed again, it is used: a third order is refused.
    response = _refused(member, shop, coupon)
    assert (response.status_code, response.json()["code"]) == (409, "coupon_used")


def test_a_partial_refund_keeps_the_coupon_used_until_the_rest_is_refunded():
    shop, member, coupon, order = _paid_with_coupon()
    pos = Api(shop.raw_key)

    half = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 6_000}).json()

    assert (half["status"], half["cash_fen"], half["points"]) == ("succeeded", 4_750, 250)
    assert status_of(coupon) == Coupon.Status.REDEEMED
    assert CouponRedemption.objects.get().reversed_at is None
    assert statement(shop)["coupons_mall_funded_fen"] == 2_000

    rest = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 6_000}).json()

    assert (rest["cash_fen"], rest["points"]) == (4_750, 250)
    assert status_of(coupon) == Coupon.Status.ISSUED
    assert statement(shop)["coupons_mall_funded_fen"] == 0
    assert_ledger_invariants()


# --- settlement -------------------------------------------------------------------------------


def test_the_statement_counts_coupon_discounts_by_funder_from_tills_and_orders():
    shop = build_shop()
    member = make_member()
    mall_till, mall_order = issue(make_template(), member), issue(make_template(), member)
    own = make_template(merchant=shop.merchant, kind=CouponTemplate.Kind.VOUCHER)  # ¥50, the merchant's
    own_till, own_order = issue(own, member), issue(make_template(merchant=shop.merchant), member)
    elsewhere = issue(make_template(), member)  # redeemed at another merchant: not this one's
    other = build_shop()
    for coupon, at in ((mall_till, shop), (own_till, shop), (elsewhere, other)):
        till = at.api.post("/api/v1/coupon-redemptions/", {
            "coupon_code": coupon_code(coupon), "store_code": at.store.code, "amount_fen": 15_000})
        assert till.status_code == 201, till.content
    pay(order_with_coupon(member, shop, mall_order)["out_trade_no"])
    pay(order_with_coupon(member, shop, own_order)["out_trade_no"])

    figures = statement(shop)

    assert dict(CouponRedemption.objects.filter(merchant=shop.merchant).values_list("coupon_id", "funded_by")) == {
        mall_till.pk: MALL, mall_order.pk: MALL, own_till.pk: MERCHANT, own_order.pk: MERCHANT}
    assert figures["coupons_mall_funded_fen"] == 2_000 + 2_000
    assert figures["coupons_merchant_funded_fen"] == 5_000 + 2_000
    assert figures["payments_due_fen"] == 10_000 + 10_000
    assert figures["total_due_fen"] == figures["net_fen"] + figures["payments_due_fen"] + 4_000
    assert statement(other)["coupons_mall_funded_fen"] == 2_000


def test_a_refund_in_a_later_month_takes_the_discount_back_in_that_month():
    tz = ZoneInfo("Asia/Shanghai")
    with time_machine.travel(datetime(2026, 1, 20, 12, tzinfo=tz), tick=False):
        shop, member, coupon, order = _paid_with_coupon(points=0)
    with time_machine.travel(datetime(2026, 2, 3, 12, tzinfo=tz), tick=False):
        Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 12_000})

        january = reports.merchant_monthly_settlement(merchant=shop.merchant, period="2026-01")
        february = reports.merchant_monthly_settlement(merchant=shop.merchant, period="2026-02")

    # January's statement stands as it was; February gives back the cash and the discount.
    assert (january.coupons_mall_funded_fen, january.payments_due_fen) == (2_000, 10_000)
    assert (february.coupons_mall_funded_fen, february.payments_due_fen) == (-2_000, -10_000)
    assert february.total_due_fen == february.net_fen - 12_000


# --- the shopper's pages and the admin --------------------------------------------------------


def _logged_in(member) -> Client:
    client = Client()
    session = client.session
    session[SESSION_MEMBER] = member.pk
    session.save()
    return client


def test_the_pay_page_offers_the_coupons_usable_here_and_the_order_page_shows_the_discount():
    shop, other = build_shop(), build_shop()
    member = make_member()
    usable = issue(make_template(name="满100减20"), member)
    issue(make_template(name="别家的券", merchant=other.merchant), member)
    issue(make_template(name="送一杯拿铁", kind=CouponTemplate.Kind.GIFT), member)
    issue(make_template(name="明天才能用", valid_from=timezone.now() + timedelta(days=1),
                        valid_until=timezone.now() + timedelta(days=5)), member)
    client = _logged_in(member)

    page = client.get(f"/m/pay/{shop.store.code}/").content.decode()

    assert "满100减20" in page and usable.code in page
    assert "别家的券" not in page and "送一杯拿铁" not in page and "明天才能用" not in page

    response = client.post(f"/m/pay/{shop.store.code}/", {"amount": "120", "points": "", "coupon": usable.code,
                                                          "channel": "sandbox"})

    assert response.status_code == 302, response.content.decode()[:2000]
    order = Order.objects.get()
    assert (order.coupon, order.coupon_discount_fen, order.payable_fen) == (usable, 2_000, 10_000)
    pay(order.out_trade_no)
    shown = client.get(f"/m/pay/orders/{order.out_trade_no}/").content.decode()
    assert "满100减20" in shown and "20.00" in shown and "100.00" in shown
    assert usable.code not in client.get(f"/m/pay/{shop.store.code}/").content.decode()  # used now


def test_the_pay_page_explains_a_refused_coupon_and_keeps_the_form():
    shop = build_shop()
    member = make_member()
    grant(member, 500)
    coupon = issue(make_template(combines_with_points=False), member)

    response = _logged_in(member).post(f"/m/pay/{shop.store.code}/", {
        "amount": "120", "points": "100", "coupon": coupon.code, "channel": "sandbox"})

    assert response.status_code == 400
    assert 'id="pay-error"' in response.content.decode()
    assert not Order.objects.exists() and status_of(coupon) == Coupon.Status.ISSUED and balance(member) == 500


def test_the_order_admin_shows_the_orders_coupon():
    shop = build_shop()
    member = make_member()
    coupon = issue(make_template(), member)
    order = Order.objects.get(out_trade_no=order_with_coupon(member, shop, coupon)["out_trade_no"])
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))

    page = client.get(reverse("admin:payments_order_change", args=[order.pk])).content.decode()

    assert page.count(coupon.code) >= 2  # the code, and the linked coupon


def test_the_shopper_api_documents_the_coupon_errors():
    document = Client().get("/api/schema/?format=json").json()
    operation = document["paths"]["/api/mp/v1/orders/"]["post"]
    described = " ".join(str(response.get("description", "")) for response in operation["responses"].values())

    for code in ("coupon_not_found", "store_not_accepted", "min_spend_not_met", "coupon_used", "coupon_held",
                 "coupon_expired", "coupon_not_valid_yet", "coupon_void", "coupon_not_combinable",
                 "coupon_gift_at_till", "coupon_no_discount", "points_exceed_amount"):
        assert code in described, code
    ref = document["paths"]["/api/v1/settlements/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    fields = document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]["properties"]
    assert {"coupons_mall_funded_fen", "coupons_merchant_funded_fen", "total_due_fen"} <= set(fields)


# --- concurrency ------------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_with_one_coupon_hold_it_once():
    shop = build_shop()
    member = make_member()
    grant(member, 1_000)
    coupon = issue(make_template(), member)
    shoppers = [Shopper(member, client=Client(raise_request_exception=False)) for _ in range(5)]

    responses = race([
        lambda s=s: s.order(store_code=shop.store.code, amount_fen=12_000, points_to_use=100, coupon_code=coupon.code)
        for s in shoppers
    ], name="coupon-hold")

    statuses = sorted(r.status_code if not isinstance(r, BaseException) else repr(r) for r in responses)
    assert statuses == [201] + [409] * 4, statuses
    assert sorted(r.json()["code"] for r in responses if r.status_code == 409) == ["coupon_held"] * 4
    assert Order.objects.count() == 1 and Order.objects.get().coupon_id == coupon.pk
    assert status_of(coupon) == Coupon.Status.HELD
    assert CouponEvent.objects.filter(coupon=coupon, kind=CouponEvent.Kind.HELD).count() == 1
    # Only the winner's points are held.
    assert PointsTransaction.objects.filter(kind="hold").count() == 1 and balance(member) == 900
    assert_ledger_invariants()
