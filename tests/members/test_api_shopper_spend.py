"""The shopper confirms a spend in the app (POST /api/mp/v1/redemption-tokens/), and
sees points that are earned but not yet spendable (GET /api/mp/v1/me/)."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from members import ledger, tasks
from members.auth import shopper_token_issue
from members.models import SpendAuthorization
from tests.factories import make_member
from tests.payments.conftest import Api, assert_error, build_shop

pytestmark = pytest.mark.django_db


class Shopper:
    def __init__(self, member):
        self.client = Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}"})

    def get(self, path):
        return self.client.get("/api/mp/v1/" + path)

    def post(self, path, body):
        return self.client.post("/api/mp/v1/" + path, data=json.dumps(body), content_type="application/json")


def test_the_mall_share_of_a_scanned_sale_shows_as_pending_until_released():
    shop = build_shop()
    gold = make_member(tier_code="gold")
    from members import codes

    Api(shop.raw_key).purchase(store_code=shop.store.code, amount_fen=100_000, member_code=codes.member_code_issue(member=gold).code)
    me = Shopper(gold).get("me/").json()
    assert (me["points_balance"], me["points_pending"]) == (1_000, 500)

    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        tasks.points_release_due()
        me = Shopper(gold).get("me/").json()
    assert (me["points_balance"], me["points_pending"]) == (1_500, 0)


def test_a_confirmed_spend_gives_a_token_the_cashier_can_use_once():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=9_000, reason="gift", idempotency_key="g")

    response = Shopper(member).post("redemption-tokens/", {"store_code": shop.store.code, "points": 8_000})

    assert response.status_code == 201
    body = response.json()
    assert body["redemption_token"].startswith("rt_") and body["max_points"] == 8_000
    assert body["store_code"] == shop.store.code and body["store_name"] == shop.store.name
    row = SpendAuthorization.objects.get()
    assert row.member_id == member.pk and row.used_at is None and body["redemption_token"] not in row.key_hash
    pos = Api(shop.raw_key)
    assert pos.redeem(store_code=shop.store.code, points=8_000, redemption_token=body["redemption_token"]).status_code == 201
    assert ledger.member_points_balance(member=member) == 1_000


def test_a_shopper_cannot_confirm_more_than_they_hold_or_at_an_unknown_shop():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=100, reason="gift", idempotency_key="g")
    shopper = Shopper(member)

    body = assert_error(shopper.post("redemption-tokens/", {"store_code": shop.store.code, "points": 101}), 409, "insufficient_points")
    assert body["points_balance"] == 100  # the shopper's own balance, to the shopper
    assert_error(shopper.post("redemption-tokens/", {"store_code": "no-such-shop", "points": 10}), 404, "store_not_found")
    assert_error(shopper.post("redemption-tokens/", {"store_code": shop.store.code, "points": "10"}), 400, "validation_error")
    assert not SpendAuthorization.objects.exists()


def test_confirming_needs_a_shopper_token():
    shop = build_shop()
    response = Client().post(
        "/api/mp/v1/redemption-tokens/", data=json.dumps({"store_code": shop.store.code, "points": 1}),
        content_type="application/json",
    )
    assert_error(response, 401, "not_authenticated")


def test_a_closed_shop_gives_no_token():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=100, reason="gift", idempotency_key="g")
    shop.merchant.status = "suspended"
    shop.merchant.save()

    assert_error(Shopper(member).post("redemption-tokens/", {"store_code": shop.store.code, "points": 10}), 403,
                 "merchant_not_active")
    assert not SpendAuthorization.objects.exists()
