"""POST /api/v1/coupon-redemptions/: a coupon used at the till, with the shopper there."""

from datetime import timedelta

import pytest
from django.utils import timezone

from coupons import services
from coupons.models import Coupon, CouponEvent, CouponRedemption, CouponTemplate
from members.models import Member, Store
from tests.coupons.conftest import coupon_code, issue, make_template, shopper_client, window
from tests.factories import make_member
from tests.payments.conftest import NO_KEY, assert_error, build_shop, code_for

pytestmark = pytest.mark.django_db

PATH = "/api/v1/coupon-redemptions/"


def redeem(api, **body):
    key = body.pop("key", None)
    return api.post(PATH, body, key=key)


def test_redeem_by_coupon_code_takes_the_discount_and_records_it(shop, template, member):
    coupon = issue(template, member)

    response = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000, order_ref="POS-1")

    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("coupon_id", "discount_fen", "kind", "gift_description", "store_code", "amount_fen")} == {
        "coupon_id": coupon.pk, "discount_fen": 2_000, "kind": "cash_off", "gift_description": "",
        "store_code": shop.store.code, "amount_fen": 12_000,
    }
    assert (body["funded_by"], body["combines_with_points"], body["order_ref"]) == ("merchant", True, "POS-1")
    coupon.refresh_from_db()
    assert (coupon.status, coupon.redeemed_store) == (Coupon.Status.REDEEMED, shop.store)
    assert CouponRedemption.objects.get().pk == body["id"]
    event = coupon.events.get(kind=CouponEvent.Kind.REDEEMED)
    assert event.detail["authorised_by"] == "coupon_code" and event.detail["discount_fen"] == 2_000


def test_redeem_by_scanned_member_code_and_coupon_id(shop, member):
    template = make_template(kind=CouponTemplate.Kind.GIFT)  # the mall's, accepted everywhere
    coupon = issue(template, member)

    response = redeem(shop.api, member_code=code_for(member), coupon_id=coupon.pk, store_code=shop.store.code, amount_fen=100)

    assert response.status_code == 201, response.content
    assert (response.json()["discount_fen"], response.json()["gift_description"]) == (0, "一杯拿铁")


def test_replay_with_the_same_key_returns_the_same_redemption(shop, template, member):
    coupon = issue(template, member)
    body = {"coupon_code": coupon_code(coupon), "store_code": shop.store.code, "amount_fen": 12_000}

    first = shop.api.post(PATH, body, key="k-1")
    again = shop.api.post(PATH, body, key="k-1")
    other = shop.api.post(PATH, {**body, "amount_fen": 13_000}, key="k-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert_error(other, 409, "idempotency_conflict")
    assert CouponRedemption.objects.count() == 1


def test_a_coupon_is_used_once(shop, template, member):
    coupon = issue(template, member)
    redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000)

    response = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000)

    assert_error(response, 409, "coupon_used")


def test_below_the_minimum_spend_is_refused_and_the_coupon_stays(shop, template, member):
    coupon = issue(template, member)

    response = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=9_999)

    assert assert_error(response, 400, "min_spend_not_met")["min_spend_fen"] == 10_000
    assert Coupon.objects.get(pk=coupon.pk).status == Coupon.Status.ISSUED


def test_another_merchants_coupon_is_not_accepted(shop, other_shop, template, member):
    coupon = issue(template, member)

    response = redeem(other_shop.api, coupon_code=coupon_code(coupon), store_code=other_shop.store.code, amount_fen=12_000)

    assert_error(response, 403, "store_not_accepted")


def test_a_template_listing_stores_is_accepted_only_there(shop, member):
    second = Store.objects.create(merchant=shop.merchant, plaza=shop.plaza, code="second-store", name="Second")
    template = make_template(merchant=shop.merchant, stores=[second])
    coupon = issue(template, member)

    refused = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000)
    accepted = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=second.code, amount_fen=12_000)

    assert_error(refused, 403, "store_not_accepted")
    assert accepted.status_code == 201


def test_a_merchant_redeems_only_at_its_own_stores(shop, other_shop, member):
    coupon = issue(make_template(kind=CouponTemplate.Kind.VOUCHER), member)

    response = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=other_shop.store.code, amount_fen=12_000)

    assert_error(response, 404, "store_not_found")


def test_outside_the_validity_window_is_refused(shop, member):
    later = make_template(merchant=shop.merchant, **window(-1, 5))
    over = make_template(merchant=shop.merchant, valid_days=1)
    early = issue(later, member)
    late = issue(over, member, at=timezone.now() - timedelta(days=2))

    not_yet = redeem(shop.api, coupon_code=coupon_code(early), store_code=shop.store.code, amount_fen=12_000)
    expired = redeem(shop.api, coupon_code=coupon_code(late), store_code=shop.store.code, amount_fen=12_000)

    assert_error(not_yet, 409, "coupon_not_valid_yet")
    assert_error(expired, 409, "coupon_expired")


def test_a_void_coupon_is_refused(shop, template, member):
    from coupons.services import coupon_void

    coupon = issue(template, member)
    coupon_void(coupon=coupon, reason="test")

    response = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000)

    assert_error(response, 409, "coupon_void")


def test_a_member_number_or_the_static_code_is_refused(shop, template, member):
    coupon = issue(template, member)

    by_number = redeem(shop.api, member_no=member.member_no, coupon_id=coupon.pk, store_code=shop.store.code, amount_fen=12_000)
    by_static = redeem(shop.api, coupon_code=coupon.code, store_code=shop.store.code, amount_fen=12_000)
    by_nothing = redeem(shop.api, coupon_id=coupon.pk, store_code=shop.store.code, amount_fen=12_000)

    assert_error(by_number, 400, "shopper_required")
    assert_error(by_static, 400, "shopper_required")
    assert_error(by_nothing, 400, "validation_error")
    assert Coupon.objects.get(pk=coupon.pk).status == Coupon.Status.ISSUED


def test_forged_and_old_coupon_codes_are_refused(shop, template, member):
    coupon = issue(template, member)
    genuine = coupon_code(coupon)
    forged = genuine[:-1] + str((int(genuine[-1]) + 1) % 10)
    old = coupon_code(coupon, now=timezone.now() - timedelta(minutes=2))

    assert_error(redeem(shop.api, coupon_code=forged, store_code=shop.store.code, amount_fen=12_000), 400, "coupon_code_invalid")
    assert_error(redeem(shop.api, coupon_code=old, store_code=shop.store.code, amount_fen=12_000), 400, "coupon_code_expired")
    # A member code is not a coupon code.
    assert_error(redeem(shop.api, coupon_code=code_for(member), store_code=shop.store.code, amount_fen=12_000), 400,
                 "coupon_code_invalid")


def test_wrong_coupon_codes_are_counted_per_key(shop, template, member, settings):
    from coupons import codes

    coupon = issue(template, member)
    wrong = "0" * codes.CODE_LENGTH
    for _ in range(codes.GUESS_LIMIT):
        assert_error(redeem(shop.api, coupon_code=wrong, store_code=shop.store.code, amount_fen=12_000), 400, "coupon_code_invalid")

    response = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000)

    assert_error(response, 429, "too_many_invalid_codes")


def test_member_code_with_someone_elses_coupon_is_not_found(shop, template, member):
    coupon = issue(template, make_member())

    response = redeem(shop.api, member_code=code_for(member), coupon_id=coupon.pk, store_code=shop.store.code, amount_fen=12_000)

    assert_error(response, 404, "coupon_not_found")


def test_member_code_scanned_by_another_merchant_is_refused(shop, other_shop, member):
    coupon = issue(make_template(kind=CouponTemplate.Kind.VOUCHER), member)
    code = code_for(member)
    other_shop.api.lookup(code)

    response = redeem(shop.api, member_code=code, coupon_id=coupon.pk, store_code=shop.store.code, amount_fen=12_000)

    assert_error(response, 409, "member_code_used")


def test_a_banned_members_coupon_is_refused(shop, template, member):
    coupon = issue(template, member)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)

    response = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000)

    assert_error(response, 403, "member_not_active")


def test_the_idempotency_key_is_required(shop, template, member):
    coupon = issue(template, member)

    response = shop.api.post(PATH, {"coupon_code": coupon_code(coupon), "store_code": shop.store.code, "amount_fen": 12_000},
                             key=NO_KEY)

    assert_error(response, 400, "idempotency_key_required")


def test_a_till_may_not_take_the_key_of_an_order_redemption(shop, template, member):
    """Paid orders' redemptions are keyed order:<out_trade_no> under their merchant: a till
    sending such a key first would block that order's capture."""
    coupon = issue(template, member)

    response = shop.api.post(PATH, {"coupon_code": coupon_code(coupon), "store_code": shop.store.code, "amount_fen": 12_000},
                             key="order:P20261127ABCDEF")

    assert_error(response, 400, "invalid_idempotency_key")
    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.ISSUED


def test_a_coupon_held_by_an_unpaid_order_has_no_till_code_and_cannot_be_voided(member, template):
    coupon = issue(template, member)
    Coupon.objects.filter(pk=coupon.pk).update(status=Coupon.Status.HELD)
    coupon.refresh_from_db()
    with pytest.raises(services.CouponHeld):
        services.coupon_void(coupon=coupon, reason="x")
    response = shopper_client(member).post(f"/api/mp/v1/coupons/{coupon.pk}/code/")
    assert_error(response, 409, "coupon_held")


@pytest.mark.parametrize("amount", ["12000", 0, -1, 1.5, 10**12])
def test_amount_must_be_a_positive_json_integer_within_bounds(shop, template, member, amount):
    coupon = issue(template, member)

    response = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=amount)

    assert_error(response, 400, "validation_error")


def test_without_an_api_key_is_401(template, member):
    from tests.payments.conftest import Api

    response = Api(None).post(PATH, {"store_code": "x", "amount_fen": 1})

    assert_error(response, 401, "not_authenticated")


# --- cancelling at the till -------------------------------------------------------------------


def _settlement(shop) -> dict:
    from django.utils import timezone

    return shop.api.get("/api/v1/settlements/", {"period": timezone.localdate().strftime("%Y-%m")}).json()


def test_a_cancelled_sale_gives_the_coupon_back_and_takes_the_discount_out_of_settlement(shop, member):
    coupon = issue(make_template(), member)  # the mall's: the mall owes the discount
    body = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000).json()
    assert _settlement(shop)["coupons_mall_funded_fen"] == 2_000

    first = shop.api.post(f"{PATH}{body['id']}/cancel/")
    again = shop.api.post(f"{PATH}{body['id']}/cancel/")

    assert first.status_code == again.status_code == 200, first.content
    assert first.json()["reversed_at"] and first.json()["reversed_at"] == again.json()["reversed_at"]
    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.ISSUED and coupon.redeemed_store is None
    assert coupon.events.filter(kind=CouponEvent.Kind.RELEASED).count() == 1
    assert _settlement(shop)["coupons_mall_funded_fen"] == 0
    # Given back, it is used again: a second redemption in force.
    again = redeem(shop.api, coupon_code=coupon_code(coupon), store_code=shop.store.code, amount_fen=12_000, key="second")
    assert again.status_code == 201 and CouponRedemption.objects.filter(coupon=coupon, reversed_at=None).count() == 1


def test_another_merchants_redemption_cannot_be_cancelled(shop, template, member):
    body = redeem(shop.api, coupon_code=coupon_code(issue(template, member)), store_code=shop.store.code, amount_fen=12_000).json()
    other = build_shop()

    assert_error(other.api.post(f"{PATH}{body['id']}/cancel/"), 404, "coupon_redemption_not_found")
    assert_error(shop.api.post(f"{PATH}{2**63}/cancel/"), 404, "coupon_redemption_not_found")
    assert CouponRedemption.objects.get(pk=body["id"]).reversed_at is None


def test_an_orders_redemption_is_given_back_by_refunding_the_order_not_at_the_till(shop, template, member):
    from coupons.holds import AUTHORISED_BY_ORDER

    body = redeem(shop.api, coupon_code=coupon_code(issue(template, member)), store_code=shop.store.code, amount_fen=12_000).json()
    CouponRedemption.objects.filter(pk=body["id"]).update(authorised_by=AUTHORISED_BY_ORDER, order_ref="P1")

    assert_error(shop.api.post(f"{PATH}{body['id']}/cancel/"), 409, "coupon_redemption_of_an_order")
    assert CouponRedemption.objects.get(pk=body["id"]).reversed_at is None
