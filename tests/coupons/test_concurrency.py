"""Coupons under real concurrency (PostgreSQL, threads each on its own connection, all
released at once): one redemption per coupon, no quota oversold, no per-member limit
passed."""

import pytest
from django.db import connection
from django.test import Client

from coupons import services
from coupons.models import Coupon, CouponEvent, CouponRedemption, CouponTemplate
from tests.concurrency import race
from tests.coupons.conftest import coupon_code, issue, make_template
from tests.factories import make_member
from tests.payments.conftest import Api

pytestmark = pytest.mark.django_db(transaction=True)


def postgres_only(test):
    needs_row_locks = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
    return pytest.mark.postgres_only(needs_row_locks(test))


def outcome(result) -> str:
    if isinstance(result, services.ApplicationError):
        return result.code
    if isinstance(result, BaseException):
        raise result
    return "ok"


@postgres_only
def test_ten_concurrent_redemptions_of_one_coupon_let_exactly_one_through(shop, member):
    coupon = issue(make_template(merchant=shop.merchant), member)
    code = coupon_code(coupon)

    def till(n):
        api = Api(shop.raw_key, client=Client(raise_request_exception=False))
        return api.post("/api/v1/coupon-redemptions/", {"coupon_code": code, "store_code": shop.store.code,
                                                        "amount_fen": 12_000, "order_ref": f"POS-{n}"})

    responses = race([lambda n=n: till(n) for n in range(10)], name="coupon-redeem")

    statuses = sorted(r.status_code if not isinstance(r, BaseException) else repr(r) for r in responses)
    assert statuses == [201] + [409] * 9, statuses
    assert sorted(r.json()["code"] for r in responses if r.status_code == 409) == ["coupon_used"] * 9
    assert CouponRedemption.objects.count() == 1
    assert CouponEvent.objects.filter(kind=CouponEvent.Kind.REDEEMED).count() == 1
    assert Coupon.objects.get(pk=coupon.pk).status == Coupon.Status.REDEEMED


@postgres_only
def test_concurrent_issues_beyond_the_quota_issue_exactly_the_quota():
    template = make_template(kind=CouponTemplate.Kind.VOUCHER, total_quota=5)
    members = [make_member() for _ in range(12)]

    results = race([lambda m=m: issue(template, m) for m in members], name="coupon-quota")

    assert sorted(outcome(r) for r in results) == ["coupon_quota_exhausted"] * 7 + ["ok"] * 5
    template.refresh_from_db()
    assert template.issued_count == Coupon.objects.count() == 5
    assert CouponEvent.objects.filter(kind=CouponEvent.Kind.ISSUED).count() == 5


@postgres_only
def test_concurrent_issues_to_one_member_hold_the_per_member_limit():
    template = make_template(kind=CouponTemplate.Kind.VOUCHER, per_member_limit=2)
    member = make_member()

    results = race([lambda: issue(template, member) for _ in range(10)], name="coupon-limit")

    assert sorted(outcome(r) for r in results) == ["coupon_member_limit_reached"] * 8 + ["ok"] * 2
    assert sorted(Coupon.objects.filter(member=member).values_list("seq", flat=True)) == [1, 2]
    template.refresh_from_db()
    assert template.issued_count == 2


@postgres_only
def test_concurrent_issues_with_one_key_issue_one_coupon():
    template = make_template(kind=CouponTemplate.Kind.VOUCHER, per_member_limit=5)
    member = make_member()

    results = race([lambda: issue(template, member, idempotency_key="campaign:1:x") for _ in range(8)], name="coupon-key")

    assert all(isinstance(r, Coupon) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert Coupon.objects.count() == 1
