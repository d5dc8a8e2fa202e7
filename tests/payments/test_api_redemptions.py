"""POST /api/v1/redemptions/ and its refunds: a shopper pays with points at a POS."""

from datetime import timedelta

import pytest
from django.utils import timezone

from members import ledger
from members.models import Lot, Member, PointsTransaction, Visit
from payments.models import ApiRequest, Redemption, RedemptionRefund
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import balance, code_for, grant

pytestmark = pytest.mark.django_db

REDEMPTIONS = "/api/v1/redemptions/"


def test_redeem_takes_the_points_and_answers_201(shop, api, rich_member):
    response = api.redeem(store_code=shop.store.code, points=300, member=rich_member, order_ref="POS-7")

    assert response.status_code == 201
    body = response.json()
    assert body["points"] == 300
    assert body["points_balance"] == 700 == balance(rich_member)
    assert body["value_fen"] == 300 and body["returned_points"] == 0
    assert body["member_no"] == rich_member.member_no and body["store_code"] == shop.store.code
    redemption = Redemption.objects.get(pk=body["id"])
    assert (redemption.merchant, redemption.store, redemption.member, redemption.points) == (
        shop.merchant, shop.store, rich_member, 300,
    )
    assert redemption.redeem.points == -300
    assert_ledger_invariants()


def test_redeem_by_scanned_member_code(shop, api, rich_member):
    response = api.redeem(store_code=shop.store.code, points=100, member_code=code_for(rich_member))

    assert response.status_code == 201
    assert balance(rich_member) == 900


def test_redeem_records_a_redemption_visit(shop, api, rich_member):
    api.redeem(store_code=shop.store.code, points=100, member=rich_member)

    visit = Visit.objects.get(member=rich_member)
    assert visit.kind == Visit.Kind.REDEMPTION and visit.plaza_id == shop.store.plaza_id
    rich_member.refresh_from_db()
    assert rich_member.last_visit_at == visit.occurred_at


def test_redeem_refuses_when_balance_insufficient(shop, api, rich_member):
    response = api.redeem(store_code=shop.store.code, points=1_001, member=rich_member)

    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_points"
    assert balance(rich_member) == 1_000
    assert not Redemption.objects.exists()
    assert not ApiRequest.objects.exists()
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.REDEEM).exists()
    assert not Visit.objects.exists()


def test_redeem_retried_with_the_same_key_after_a_top_up_succeeds(shop, api, rich_member):
    refused = api.redeem(store_code=shop.store.code, points=1_200, member=rich_member, key="redeem-1")
    grant(rich_member, 200)

    retried = api.redeem(store_code=shop.store.code, points=1_200, member=rich_member, key="redeem-1")

    assert refused.status_code == 409
    assert retried.status_code == 201
    assert retried.json()["points_balance"] == 0 == balance(rich_member)


def test_redeem_replay_returns_the_first_response_and_redeems_once(shop, api, rich_member):
    first = api.redeem(store_code=shop.store.code, points=100, member=rich_member, key="redeem-2")
    again = api.redeem(store_code=shop.store.code, points=100, member=rich_member, key="redeem-2")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Redemption.objects.count() == 1 and balance(rich_member) == 900


def test_redeem_same_key_with_other_points_is_409_idempotency_conflict(shop, api, rich_member):
    api.redeem(store_code=shop.store.code, points=100, member=rich_member, key="redeem-3")

    response = api.redeem(store_code=shop.store.code, points=101, member=rich_member, key="redeem-3")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert balance(rich_member) == 900


@pytest.mark.parametrize(
    ("points", "code"),
    [("10", "not_an_integer"), (1.5, "not_an_integer"), (10.0, "not_an_integer"), (False, "not_an_integer"),
     (0, "min_value"), (-5, "min_value"), (100_000_001, "max_value")],
)
def test_redeem_refuses_points_that_are_not_a_positive_json_integer_within_bounds(shop, api, rich_member, points, code):
    response = api.redeem(store_code=shop.store.code, points=points, member=rich_member)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert [e["code"] for e in response.json()["errors"]["points"]] == [code]
    assert balance(rich_member) == 1_000


def test_redeem_for_a_banned_member_is_403(shop, api, rich_member):
    Member.objects.filter(pk=rich_member.pk).update(status=Member.Status.BANNED)

    response = api.redeem(store_code=shop.store.code, points=100, member=rich_member)

    assert response.status_code == 403
    assert response.json()["code"] == "member_not_active"
    assert balance(rich_member) == 1_000


def test_redeem_with_an_expired_member_code_is_refused(shop, api, rich_member):
    old = code_for(rich_member, now=timezone.now() - timedelta(minutes=2))

    response = api.redeem(store_code=shop.store.code, points=100, member_code=old)

    assert response.status_code == 400
    assert response.json()["code"] == "member_code_expired"
    assert balance(rich_member) == 1_000


def test_redeem_at_an_unknown_store_is_404(api, rich_member):
    response = api.redeem(store_code="nowhere", points=100, member=rich_member)

    assert response.status_code == 404
    assert response.json()["code"] == "store_not_found"


def test_redemption_detail_shows_the_redemption(shop, api, rich_member):
    created = api.redeem(store_code=shop.store.code, points=250, member=rich_member).json()

    response = api.get(f"{REDEMPTIONS}{created['id']}/")

    assert response.status_code == 200
    assert response.json() == {**created, "points_balance": None}  # told to the spend's answer only


def test_redemption_detail_of_an_unknown_id_is_404(api):
    response = api.get(f"{REDEMPTIONS}999999999/")

    assert response.status_code == 404
    assert response.json()["code"] == "redemption_not_found"


# --- refunds of redemptions -------------------------------------------------------------


def test_redemption_refund_gives_the_points_back(shop, api, rich_member):
    redemption = api.redeem(store_code=shop.store.code, points=300, member=rich_member).json()

    response = api.refund_redemption(redemption["id"], 100)

    assert response.status_code == 201
    body = response.json()
    assert body["redemption_id"] == redemption["id"] and body["points"] == 100
    assert body["points_balance"] is None and balance(rich_member) == 800
    assert api.get(f"{REDEMPTIONS}{redemption['id']}/").json()["returned_points"] == 100
    assert_ledger_invariants()


def test_redemption_refunds_cannot_give_back_more_than_was_taken(shop, api, rich_member):
    redemption = api.redeem(store_code=shop.store.code, points=300, member=rich_member).json()
    api.refund_redemption(redemption["id"], 100)

    refused = api.refund_redemption(redemption["id"], 201)

    assert refused.status_code == 409
    assert refused.json()["code"] == "refund_exceeds_purchase"
    assert balance(rich_member) == 800 and RedemptionRefund.objects.count() == 1
    assert api.refund_redemption(redemption["id"], 200).status_code == 201
    assert balance(rich_member) == 1_000
    assert_ledger_invariants()


def test_redemption_refund_returns_points_with_their_original_expiry(shop, api):
    member = make_member()
    now = timezone.now()
    soon, late = now + timedelta(days=10), now + timedelta(days=300)
    ledger.points_grant(member=member, points=100, reason="t", idempotency_key="soon", expires_at=soon)
    ledger.points_grant(member=member, points=100, reason="t", idempotency_key="late", expires_at=late)
    redemption = api.redeem(store_code=shop.store.code, points=150, member=member).json()  # all of soon, 50 of late

    api.refund_redemption(redemption["id"], 150)

    by_expiry = {}
    for expires_at, remaining in Lot.objects.filter(member=member).values_list("expires_at", "remaining"):
        by_expiry[expires_at] = by_expiry.get(expires_at, 0) + remaining
    assert by_expiry == {soon: 100, late: 100}
    assert_ledger_invariants()


def test_redemption_refund_replay_returns_the_first_response(shop, api, rich_member):
    redemption = api.redeem(store_code=shop.store.code, points=300, member=rich_member).json()

    first = api.refund_redemption(redemption["id"], 50, key="rr-1")
    again = api.refund_redemption(redemption["id"], 50, key="rr-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert RedemptionRefund.objects.count() == 1 and balance(rich_member) == 750


def test_redemption_refund_of_an_unknown_redemption_is_404(api):
    response = api.refund_redemption(999_999_999, 10)

    assert response.status_code == 404
    assert response.json()["code"] == "redemption_not_found"
