"""The shopper's coupons: GET /api/mp/v1/coupons/ and POST /api/mp/v1/coupons/<id>/code/."""

import pytest
from django.utils import timezone

from coupons import codes
from coupons.models import CouponTemplate
from coupons.services import coupon_void
from members.models import Store
from tests.coupons.conftest import issue, make_template, shopper_client, window
from tests.factories import make_member
from tests.payments.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_list_shows_my_coupons_newest_first_with_value_and_stores(shop, member):
    second = Store.objects.create(merchant=shop.merchant, plaza=shop.plaza, code="second-store", name="二号店")
    listed = make_template(merchant=shop.merchant, stores=[second], name="满100减20")
    mall = make_template(kind=CouponTemplate.Kind.PERCENT_OFF, name="85折")
    first = issue(listed, member)
    newest = issue(mall, member)
    issue(mall, make_member())  # someone else's

    response = shopper_client(member).get("/api/mp/v1/coupons/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [c["id"] for c in results] == [newest.pk, first.pk]
    assert {k: results[1][k] for k in ("name", "kind", "status", "face_value_fen", "min_spend_fen", "merchant", "stores", "all_stores")} == {
        "name": "满100减20", "kind": "cash_off", "status": "issued", "face_value_fen": 2_000, "min_spend_fen": 10_000,
        "merchant": shop.merchant.name, "stores": ["二号店"], "all_stores": False,
    }
    assert (results[0]["percent_off_bp"], results[0]["max_discount_fen"], results[0]["merchant"], results[0]["all_stores"]) == (
        1_500, 3_000, None, True)
    assert response.json()["next_cursor"] is None


def test_list_pages_by_cursor(member):
    template = make_template(per_member_limit=3)
    coupons = [issue(template, member) for _ in range(3)]
    client = shopper_client(member)

    page1 = client.get("/api/mp/v1/coupons/", {"limit": 2}).json()
    page2 = client.get("/api/mp/v1/coupons/", {"limit": 2, "cursor": page1["next_cursor"]}).json()

    assert [c["id"] for c in page1["results"] + page2["results"]] == [c.pk for c in reversed(coupons)]
    assert page2["next_cursor"] is None


def test_code_names_the_coupon_and_rotates(template, member):
    coupon = issue(template, member)

    response = shopper_client(member).post(f"/api/mp/v1/coupons/{coupon.pk}/code/")

    assert response.status_code == 200
    body = response.json()
    assert len(body["code"]) == codes.CODE_LENGTH and body["code"].isdigit()
    assert codes.coupon_code_check(code=body["code"], caller="test").pk == coupon.pk


def test_code_of_someone_elses_coupon_is_not_found(template, member):
    coupon = issue(template, make_member())

    assert_error(shopper_client(member).post(f"/api/mp/v1/coupons/{coupon.pk}/code/"), 404, "coupon_not_found")
    assert_error(shopper_client(member).post(f"/api/mp/v1/coupons/{10**30}/code/"), 404, "coupon_not_found")


def test_no_code_for_a_coupon_that_cannot_be_used(member):
    voided = issue(make_template(), member)
    coupon_void(coupon=voided, reason="test")
    early = issue(make_template(**window(-1, 3)), member)

    assert_error(shopper_client(member).post(f"/api/mp/v1/coupons/{voided.pk}/code/"), 409, "coupon_void")
    assert_error(shopper_client(member).post(f"/api/mp/v1/coupons/{early.pk}/code/"), 409, "coupon_not_valid_yet")


def test_without_a_token_is_401():
    from django.test import Client

    assert Client().get("/api/mp/v1/coupons/").status_code == 401
