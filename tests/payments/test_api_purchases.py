"""POST /api/v1/purchases/ and its refunds: points earned at a POS, replays, refunds."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from members import ledger
from members.models import Member, Merchant, PointsTransaction, Store, Visit
from payments.models import ApiRequest, Purchase, PurchaseRefund
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import balance, build_shop, code_for, grant

pytestmark = pytest.mark.django_db

PURCHASES = "/api/v1/purchases/"


def later(seconds: int):
    """Move the clock forward for the code under test."""
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds))


# --- booking a purchase ---------------------------------------------------------------


def test_purchase_by_member_no_earns_points_funded_by_the_merchant(shop, api, member):
    response = api.purchase(store_code=shop.store.code, amount_fen=38_00, member=member, order_ref="POS-1")

    assert response.status_code == 201
    body = response.json()
    assert body["points_earned"] == 38  # 1 % of ¥38.00 at 1 fen a point
    assert body["points_balance"] is None and balance(member) == 38  # a member number is not told the balance
    assert body["member_no"] == member.member_no
    assert body["store_code"] == shop.store.code
    assert body["amount_fen"] == 3800 and body["refunded_fen"] == 0 and body["order_ref"] == "POS-1"
    purchase = Purchase.objects.get(pk=body["id"])
    assert (purchase.merchant, purchase.store, purchase.member, purchase.amount_fen) == (shop.merchant, shop.store, member, 3800)
    assert purchase.earn.points == 38 and purchase.earn.merchant == shop.merchant
    assert_ledger_invariants()


def test_purchase_by_scanned_member_code_earns_points(shop, api, member):
    response = api.purchase(store_code=shop.store.code, amount_fen=10_000, member_code=code_for(member))

    assert response.status_code == 201
    assert response.json()["points_earned"] == 100
    assert response.json()["points_balance"] == 100  # the scanned code is the shopper: told
    assert response.json()["member_no"] == member.member_no
    assert balance(member) == 100


def test_purchase_applies_the_tier_multiplier_when_the_code_is_scanned(shop, api):
    gold = make_member(tier_code="gold")  # 1.5×: the extra half is funded by the mall
    response = api.purchase(store_code=shop.store.code, amount_fen=10_000, member_code=code_for(gold))

    assert response.status_code == 201
    assert response.json()["points_earned"] == 150
    assert balance(gold) == 100 and ledger.member_points_pending(member=gold) == 50  # the mall's half waits out the refund window
    assert_ledger_invariants()


def test_purchase_records_a_purchase_visit_at_the_store_plaza(shop, api, member):
    body = api.purchase(store_code=shop.store.code, amount_fen=5_000, member=member).json()

    visit = Visit.objects.get(member=member)
    purchase = Purchase.objects.get(pk=body["id"])
    assert visit.kind == Visit.Kind.PURCHASE
    assert visit.plaza_id == shop.store.plaza_id and visit.store_id == shop.store.pk
    assert visit.amount_fen == 5_000
    member.refresh_from_db()
    assert member.last_visit_at == purchase.created_at == visit.occurred_at
    assert member.last_visit_plaza_id == shop.store.plaza_id


def test_purchase_detail_shows_the_purchase(shop, api, member):
    created = api.purchase(store_code=shop.store.code, amount_fen=2_500, member=member, order_ref="R-9").json()

    response = api.get(f"{PURCHASES}{created['id']}/")

    assert response.status_code == 200
    assert response.json() == created


def test_purchase_of_exactly_the_maximum_amount_is_accepted(shop, api, member):
    response = api.purchase(store_code=shop.store.code, amount_fen=100_000_000, member=member)

    assert response.status_code == 201
    assert response.json()["points_earned"] == 1_000_000


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("100", "not_an_integer"),
        (1.5, "not_an_integer"),
        (1.0, "not_an_integer"),
        (True, "not_an_integer"),
        (0, "min_value"),
        (-1, "min_value"),
        (100_000_001, "max_value"),
    ],
)
def test_purchase_refuses_an_amount_that_is_not_a_positive_json_integer_within_bounds(shop, api, member, amount, code):
    response = api.purchase(store_code=shop.store.code, amount_fen=amount, member=member)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert [e["code"] for e in response.json()["errors"]["amount_fen"]] == [code]
    assert not Purchase.objects.exists() and not ApiRequest.objects.exists()
    assert balance(member) == 0


def test_purchase_without_amount_is_refused(shop, api, member):
    response = api.post(PURCHASES, {"store_code": shop.store.code, "member_no": member.member_no})

    assert response.status_code == 400
    assert response.json()["errors"]["amount_fen"][0]["code"] == "required"


def test_purchase_maximum_follows_the_setting(shop, api, member, settings):
    settings.MAX_AMOUNT_FEN = 5_000

    refused = api.purchase(store_code=shop.store.code, amount_fen=5_001, member=member)
    accepted = api.purchase(store_code=shop.store.code, amount_fen=5_000, member=member)

    assert refused.status_code == 400
    assert refused.json()["errors"]["amount_fen"][0]["code"] == "max_value"
    assert accepted.status_code == 201


@pytest.mark.parametrize("who", ["both", "neither"])
def test_purchase_needs_exactly_one_of_member_code_and_member_no(shop, api, member, who):
    body = {"store_code": shop.store.code, "amount_fen": 1_000}
    if who == "both":
        body.update(member_code=code_for(member), member_no=member.member_no)

    response = api.post(PURCHASES, body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"]["non_field_errors"][0]["code"] == "member_required"
    assert not Purchase.objects.exists()


def test_purchase_with_blank_member_fields_is_refused(shop, api, member):
    response = api.post(PURCHASES, {"store_code": shop.store.code, "amount_fen": 1_000, "member_code": "", "member_no": ""})

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"]["member_code"][0]["code"] == "blank"
    assert not Purchase.objects.exists()


def test_purchase_for_an_unknown_member_no_is_404(shop, api):
    response = api.post(PURCHASES, {"store_code": shop.store.code, "amount_fen": 1_000, "member_no": "100000000009"})

    assert response.status_code == 404
    assert response.json()["code"] == "member_not_found"


def test_purchase_for_an_unknown_store_is_404(shop, api, member):
    response = api.purchase(store_code="no-such-store", amount_fen=1_000, member=member)

    assert response.status_code == 404
    assert response.json()["code"] == "store_not_found"


def test_purchase_for_a_banned_member_is_403_and_earns_nothing(shop, api, member):
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)

    response = api.purchase(store_code=shop.store.code, amount_fen=1_000, member=member)

    assert response.status_code == 403
    assert response.json()["code"] == "member_not_active"
    assert balance(member) == 0 and not Purchase.objects.exists() and not Visit.objects.exists()


def test_purchase_by_a_suspended_merchant_is_403(shop, api, member):
    Merchant.objects.filter(pk=shop.merchant.pk).update(status=Merchant.Status.SUSPENDED)

    response = api.purchase(store_code=shop.store.code, amount_fen=1_000, member=member)

    assert response.status_code == 403
    assert response.json()["code"] == "merchant_not_active"
    assert balance(member) == 0 and not Purchase.objects.exists()


def test_purchase_at_a_closed_store_is_403(shop, api, member):
    Store.objects.filter(pk=shop.store.pk).update(is_active=False)

    response = api.purchase(store_code=shop.store.code, amount_fen=1_000, member=member)

    assert response.status_code == 403
    assert response.json()["code"] == "merchant_not_active"
    assert balance(member) == 0 and not Purchase.objects.exists()


def test_purchase_with_an_expired_member_code_is_refused(shop, api, member):
    old = code_for(member, now=timezone.now() - timedelta(minutes=3))

    response = api.purchase(store_code=shop.store.code, amount_fen=1_000, member_code=old)

    assert response.status_code == 400
    assert response.json()["code"] == "member_code_expired"
    assert not Purchase.objects.exists()


# --- replays ----------------------------------------------------------------------------


def test_replay_returns_the_first_response_byte_for_byte_even_after_the_balance_changed(shop, api, member):
    code = code_for(member)
    first = api.purchase(store_code=shop.store.code, amount_fen=10_000, member_code=code, key="pos-1")
    grant(member, 500)

    again = api.purchase(store_code=shop.store.code, amount_fen=10_000, member_code=code, key="pos-1")

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.json()["points_balance"] == 100  # what it was when the purchase was booked
    assert Purchase.objects.count() == 1
    assert PointsTransaction.objects.filter(kind=PointsTransaction.Kind.EARN).count() == 1
    assert balance(member) == 600


def test_replay_is_answered_even_after_the_member_code_expired(shop, api, member):
    code = code_for(member)
    first = api.purchase(store_code=shop.store.code, amount_fen=10_000, member_code=code, key="pos-2")
    assert first.status_code == 201

    with later(5 * 60):
        fresh_key = api.purchase(store_code=shop.store.code, amount_fen=10_000, member_code=code)
        replay = api.purchase(store_code=shop.store.code, amount_fen=10_000, member_code=code, key="pos-2")

    assert fresh_key.status_code == 400 and fresh_key.json()["code"] == "member_code_expired"  # the code really is stale
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert Purchase.objects.count() == 1 and balance(member) == 100


def test_replay_matches_the_body_not_its_formatting(shop, api, member):
    store_code, member_no = shop.store.code, member.member_no
    compact = f'{{"store_code":"{store_code}","member_no":"{member_no}","amount_fen":700}}'
    reordered = f'{{ "amount_fen": 700,\n  "member_no": "{member_no}", "store_code": "{store_code}" }}'

    first = api.post(PURCHASES, raw=compact, key="pos-6")
    again = api.post(PURCHASES, raw=reordered, key="pos-6")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Purchase.objects.count() == 1


def test_same_key_with_another_body_is_409_idempotency_conflict(shop, api, member):
    api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member, key="pos-3")

    response = api.purchase(store_code=shop.store.code, amount_fen=10_001, member=member, key="pos-3")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert Purchase.objects.count() == 1 and balance(member) == 100


def test_same_key_on_another_operation_is_409_idempotency_conflict(shop, api, member):
    api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member, key="pos-4")

    response = api.redeem(store_code=shop.store.code, points=10, member=member, key="pos-4")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert balance(member) == 100


def test_an_error_is_not_stored_so_a_retry_with_the_same_key_runs_again(shop, api, member):
    refused = api.purchase(store_code="typo", amount_fen=10_000, member=member, key="pos-5")
    retried = api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member, key="pos-5")

    assert refused.status_code == 404
    assert retried.status_code == 201 and balance(member) == 100


def test_duplicate_order_ref_under_a_new_key_is_409_and_earns_nothing_more(shop, api, member):
    api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member, order_ref="POS-42")

    response = api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member, order_ref="POS-42")

    assert response.status_code == 409
    assert response.json()["code"] == "duplicate_order_ref"
    assert Purchase.objects.count() == 1 and ApiRequest.objects.count() == 1
    assert PointsTransaction.objects.filter(kind=PointsTransaction.Kind.EARN).count() == 1
    assert balance(member) == 100 and Visit.objects.count() == 1
    assert_ledger_invariants()


def test_order_ref_is_unique_per_merchant_only(shop, api, member):
    other = build_shop()
    api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member, order_ref="POS-42")

    response = other.api.purchase(store_code=other.store.code, amount_fen=10_000, member=member, order_ref="POS-42")

    assert response.status_code == 201 and balance(member) == 200


# --- refunds ----------------------------------------------------------------------------


@pytest.fixture
def purchase_333(make_shop, member):
    """A ¥100 purchase at a 3.33 % shop: 333 points, which do not split evenly."""
    shop = make_shop(earn_rate_bp=333)
    body = shop.api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member).json()
    assert body["points_earned"] == 333
    return shop, body["id"]


def test_partial_refunds_take_back_exactly_the_points_earned(purchase_333, member):
    shop, purchase_id = purchase_333
    reversed_points, left = [], []
    for amount in (3_333, 3_333, 3_334):
        response = shop.api.refund_purchase(purchase_id, amount)
        assert response.status_code == 201
        body = response.json()
        assert body["purchase_id"] == purchase_id and body["amount_fen"] == amount and body["shortfall_points"] == 0
        reversed_points.append(body["points_reversed"])
        left.append(body["refundable_fen"])

    assert sum(reversed_points) == 333
    assert left == [6_667, 3_334, 0]
    assert balance(member) == 0
    assert shop.api.get(f"{PURCHASES}{purchase_id}/").json()["refunded_fen"] == 10_000
    assert_ledger_invariants()


def test_refund_beyond_what_is_left_is_409_and_changes_nothing(purchase_333, member):
    shop, purchase_id = purchase_333
    shop.api.refund_purchase(purchase_id, 6_000)
    before = balance(member)

    response = shop.api.refund_purchase(purchase_id, 4_001)

    assert response.status_code == 409
    assert response.json()["code"] == "refund_exceeds_purchase"
    assert balance(member) == before
    assert PurchaseRefund.objects.count() == 1
    assert Purchase.objects.get(pk=purchase_id).refunded_fen == 6_000
    assert shop.api.refund_purchase(purchase_id, 4_000).status_code == 201


def test_refund_after_the_shopper_spent_the_points_reports_the_shortfall(shop, api, member):
    purchase = api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member).json()
    assert api.redeem(store_code=shop.store.code, points=80, member=member).status_code == 201

    response = api.refund_purchase(purchase["id"], 10_000)

    assert response.status_code == 201
    body = response.json()
    assert body["points_reversed"] == 20
    assert body["shortfall_points"] == 80
    assert body["points_balance"] is None and balance(member) == 0
    assert_ledger_invariants()


def test_refund_replay_returns_the_first_response_and_refunds_once(shop, api, member):
    purchase = api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member).json()

    first = api.refund_purchase(purchase["id"], 2_500, key="refund-1")
    again = api.refund_purchase(purchase["id"], 2_500, key="refund-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert PurchaseRefund.objects.count() == 1 and balance(member) == 75


@pytest.mark.parametrize(("amount", "code"), [("100", "not_an_integer"), (0, "min_value"), (2.5, "not_an_integer")])
def test_refund_refuses_an_amount_that_is_not_a_positive_json_integer(shop, api, member, amount, code):
    purchase = api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member).json()

    response = api.refund_purchase(purchase["id"], amount)

    assert response.status_code == 400
    assert response.json()["errors"]["amount_fen"][0]["code"] == code
    assert balance(member) == 100


def test_refund_of_an_unknown_purchase_is_404(api):
    response = api.refund_purchase(999_999_999, 100)

    assert response.status_code == 404
    assert response.json()["code"] == "purchase_not_found"

