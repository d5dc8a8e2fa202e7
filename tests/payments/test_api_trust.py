"""Attacks on the points, performed through the merchant API as a hostile merchant would.

Each test is one attack from the "Trust" issue; it asserts that the attack fails with
the right code and that no point and no fen moved.
"""

from datetime import timedelta

import pytest
import time_machine
from django.db.models import Sum
from django.utils import timezone

from members import identity, ledger, spend, tasks
from members.models import Account, Entry, Lot, Member, PointsTransaction, SpendAuthorization
from payments.models import Purchase, Redemption
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import assert_error, balance, code_for, grant

pytestmark = pytest.mark.django_db


def mall_funded() -> int:
    """Points the mall has given out so far (its promotions account, negated)."""
    return -(Entry.objects.filter(account__kind=Account.Kind.PROMOTIONS).aggregate(s=Sum("amount"))["s"] or 0)


def settlement_net(shop) -> int:
    start = timezone.now() - timedelta(days=1)
    return ledger.merchant_settlement(merchant=shop.merchant, start=start, end=timezone.now() + timedelta(days=30)).net_fen


# --- 1. minting mall money -----------------------------------------------------------------


def test_a_fake_sale_by_member_number_for_a_black_card_mints_no_mall_points(shop, api):
    black = make_member(tier_code="black")  # 2×: the extra half would be the mall's

    response = api.purchase(store_code=shop.store.code, amount_fen=10_000_000, member=black)

    assert response.status_code == 201
    body = response.json()
    assert body["points_earned"] == 100_000  # the merchant's 1 %, nothing more
    assert body["points_balance"] is None  # a member number proves nothing: the balance is not told
    assert body["member_present"] is False
    assert mall_funded() == 0
    assert ledger.member_points_pending(member=black) == 0
    assert Purchase.objects.get().member_present is False


def test_minting_then_spending_by_member_number_moves_nothing(shop, api):
    black = make_member(tier_code="black")
    api.purchase(store_code=shop.store.code, amount_fen=10_000_000, member=black)
    net_before = settlement_net(shop)

    response = api.redeem(store_code=shop.store.code, points=100_000, member_no=black.member_no)

    body = assert_error(response, 400, "shopper_required")
    assert "points_balance" not in body
    assert not Redemption.objects.exists()
    assert balance(black) == 100_000
    assert settlement_net(shop) == net_before == -100_000  # the merchant owes for what it issued, and is owed nothing
    assert mall_funded() == 0


def test_the_mall_extra_of_a_scanned_sale_is_pending_and_cannot_be_spent_at_once(shop, api):
    gold = make_member(tier_code="gold")  # 1.5×
    response = api.purchase(store_code=shop.store.code, amount_fen=100_000, member_code=code_for(gold))
    assert response.status_code == 201
    assert response.json()["points_earned"] == 1_500 and response.json()["points_balance"] == 1_000

    attempt = api.redeem(store_code=shop.store.code, points=1_500, member=gold)

    assert_error(attempt, 409, "insufficient_points")
    assert ledger.member_points_pending(member=gold) == 500
    assert balance(gold) == 1_000


def test_refunding_a_scanned_sale_inside_the_hold_takes_the_mall_extra_back(shop, api):
    gold = make_member(tier_code="gold")
    purchase = api.purchase(store_code=shop.store.code, amount_fen=100_000, member_code=code_for(gold)).json()

    refund = api.refund_purchase(purchase["id"], 100_000)

    assert refund.status_code == 201
    assert refund.json()["points_reversed"] == 1_500 and refund.json()["shortfall_points"] == 0
    assert mall_funded() == 0 and balance(gold) == 0 and ledger.member_points_pending(member=gold) == 0
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert tasks.points_release_due() == 0
    assert_ledger_invariants()


def test_a_sale_above_the_merchants_limit_is_refused(shop, api, member):
    shop.merchant.max_sale_fen = 1_000_000
    shop.merchant.save()

    response = api.purchase(store_code=shop.store.code, amount_fen=1_000_001, member_code=code_for(member))

    assert_error(response, 400, "sale_amount_over_limit")
    assert not Purchase.objects.exists() and not PointsTransaction.objects.exists()


def test_mall_points_over_the_merchants_daily_cap_are_held_for_staff(shop, api, settings):
    settings.MERCHANT_MALL_POINTS_DAILY_CAP = 1_000
    gold = [make_member(tier_code="gold") for _ in range(3)]
    for m in gold:  # 500 mall-funded points each
        assert api.purchase(store_code=shop.store.code, amount_fen=100_000, member_code=code_for(m)).status_code == 201

    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert tasks.points_release_due() == 2

    assert Lot.objects.filter(status=Lot.Status.HELD, merchant=shop.merchant).count() == 1
    assert sorted(ledger.member_points_pending(member=m) for m in gold) == [0, 0, 500]
    assert_ledger_invariants()


# --- 2. draining a member ----------------------------------------------------------------------


def test_a_redemption_by_member_number_is_refused_without_telling_the_balance(shop, api, rich_member):
    response = api.redeem(store_code=shop.store.code, points=5_000_000, member_no=rich_member.member_no)

    body = assert_error(response, 400, "shopper_required")
    assert "points_balance" not in body and "1000" not in response.content.decode()
    assert balance(rich_member) == 1_000


def test_a_redemption_with_neither_code_nor_token_is_refused(shop, api, rich_member):
    response = api.post("/api/v1/redemptions/", {"store_code": shop.store.code, "points": 10})

    assert_error(response, 400, "validation_error")
    assert balance(rich_member) == 1_000


def test_a_scanned_code_pays_once(shop, api, rich_member):
    code = code_for(rich_member)
    assert api.redeem(store_code=shop.store.code, points=100, member_code=code).status_code == 201

    again = api.redeem(store_code=shop.store.code, points=100, member_code=code)

    assert_error(again, 409, "member_code_used")
    assert balance(rich_member) == 900 and Redemption.objects.count() == 1


def test_a_scanned_code_pays_at_most_the_per_spend_limit(shop, api, settings):
    settings.REDEEM_CODE_MAX_POINTS = 500
    member = make_member()
    grant(member, 10_000)

    response = api.redeem(store_code=shop.store.code, points=501, member_code=code_for(member))

    body = assert_error(response, 403, "shopper_confirmation_required")
    assert body["max_points"] == 500 and "points_balance" not in body
    assert balance(member) == 10_000
    # The refused code was not used up: it still pays within the limit.
    assert api.redeem(store_code=shop.store.code, points=500, member_code=code_for(member)).status_code == 201


def test_a_confirmed_token_pays_above_the_code_limit_once_and_only_where_and_up_to_what_was_confirmed(
    shop, other_shop, api, settings
):
    settings.REDEEM_CODE_MAX_POINTS = 500
    member = make_member()
    grant(member, 10_000)
    token = spend.spend_token_issue(member=member, store=shop.store, max_points=8_000).token

    assert_error(other_shop.api.redeem(store_code=other_shop.store.code, points=10, redemption_token=token), 400,
                 "redemption_token_invalid")
    assert_error(api.redeem(store_code=shop.store.code, points=8_001, redemption_token=token), 403, "redemption_token_exceeded")
    assert api.redeem(store_code=shop.store.code, points=8_000, redemption_token=token).status_code == 201
    assert_error(api.redeem(store_code=shop.store.code, points=1, redemption_token=token), 409, "redemption_token_used")
    assert balance(member) == 2_000
    assert Redemption.objects.get().authorization.kind == SpendAuthorization.Kind.TOKEN


def test_an_expired_or_made_up_token_pays_nothing(shop, api, rich_member):
    token = spend.spend_token_issue(member=rich_member, store=shop.store, max_points=100).token
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert_error(api.redeem(store_code=shop.store.code, points=100, redemption_token=token), 400, "redemption_token_expired")
    assert_error(api.redeem(store_code=shop.store.code, points=100, redemption_token="rt_" + "A" * 32), 400,
                 "redemption_token_invalid")
    assert balance(rich_member) == 1_000 and not Redemption.objects.exists()


def test_the_shopper_gets_a_message_for_every_spend(shop, api, rich_member):
    api.redeem(store_code=shop.store.code, points=100, member_code=code_for(rich_member))
    api.redeem(store_code=shop.store.code, points=200, member=rich_member)

    assert rich_member.pushes.filter(event="points_redeemed").count() == 2


def test_the_balance_is_not_told_by_purchase_details_or_refunds(shop, api, member):
    purchase = api.purchase(store_code=shop.store.code, amount_fen=10_000, member_code=code_for(member)).json()

    assert api.get(f"/api/v1/purchases/{purchase['id']}/").json()["points_balance"] is None
    assert api.refund_purchase(purchase["id"], 1_000).json()["points_balance"] is None


# --- 4. merges are final and lossless -----------------------------------------------------------


def test_refunding_a_merged_members_purchase_takes_the_points_back_from_the_survivor(shop, api):
    survivor, duplicate = make_member(), make_member()
    purchase = api.purchase(store_code=shop.store.code, amount_fen=10_000, member=duplicate).json()
    identity.member_merge(source=duplicate, target=survivor, reason="same person")
    assert balance(survivor) == 100

    refund = api.refund_purchase(purchase["id"], 10_000)

    assert refund.status_code == 201
    assert refund.json()["points_reversed"] == 100 and refund.json()["shortfall_points"] == 0
    assert balance(survivor) == 0 and balance(duplicate) == 0
    assert settlement_net(shop) == 0  # the merchant is not charged for points the survivor kept
    assert_ledger_invariants()


def test_a_merged_members_redemption_refund_pays_into_the_survivor(shop, api):
    survivor, duplicate = make_member(), make_member()
    grant(duplicate, 500)
    redemption = api.redeem(store_code=shop.store.code, points=300, member=duplicate).json()
    identity.member_merge(source=duplicate, target=survivor, reason="same person")

    back = api.refund_redemption(redemption["id"], 300)

    assert back.status_code == 201
    assert balance(survivor) == 500 and balance(duplicate) == 0
    assert_ledger_invariants()


def test_a_sale_by_a_merged_members_number_lands_with_the_survivor(shop, api):
    survivor, duplicate = make_member(), make_member()
    identity.member_merge(source=duplicate, target=survivor, reason="same person")

    response = api.purchase(store_code=shop.store.code, amount_fen=10_000, member=duplicate)

    assert response.status_code == 201
    assert balance(survivor) == 100 and balance(duplicate) == 0
    assert Purchase.objects.get().member_id == survivor.pk
    assert Member.objects.get(pk=duplicate.pk).status == Member.Status.MERGED
    assert_ledger_invariants()


def test_pending_points_move_with_a_merge_and_are_cancelled_on_the_survivor_by_a_refund(shop, api):
    survivor, duplicate = make_member(), make_member(tier_code="gold")
    purchase = api.purchase(store_code=shop.store.code, amount_fen=100_000, member_code=code_for(duplicate)).json()
    identity.member_merge(source=duplicate, target=survivor, reason="same person")
    assert ledger.member_points_pending(member=survivor) == 500 and balance(survivor) == 1_000

    refund = api.refund_purchase(purchase["id"], 100_000)

    assert refund.json()["points_reversed"] == 1_500
    assert ledger.member_points_pending(member=survivor) == 0 and balance(survivor) == 0
    assert mall_funded() == 0
    assert_ledger_invariants()


def test_trying_member_numbers_at_random_is_counted_and_stopped(shop, api, member):
    for n in range(20):
        assert_error(api.purchase(store_code=shop.store.code, amount_fen=100, member_no=f"{n:012d}"), 404, "member_not_found")

    refused = api.purchase(store_code=shop.store.code, amount_fen=100, member=member)  # even a real one, now

    assert_error(refused, 429, "too_many_invalid_member_numbers")
    assert not Purchase.objects.exists() and not PointsTransaction.objects.exists()
    # Another merchant's key is not affected.
    from tests.payments.conftest import build_shop

    other = build_shop()
    assert other.api.purchase(store_code=other.store.code, amount_fen=100, member=member).status_code == 201


# --- found by the black-box attack on this work --------------------------------------------------


def test_a_code_scanned_at_one_shop_cannot_be_spent_or_used_at_another(shop, other_shop, api, rich_member):
    code = code_for(rich_member)
    assert api.purchase(store_code=shop.store.code, amount_fen=3_800, member_code=code).status_code == 201

    stolen = other_shop.api.redeem(store_code=other_shop.store.code, points=900, member_code=code)

    body = assert_error(stolen, 409, "member_code_used")
    assert "points_balance" not in body
    assert_error(other_shop.api.purchase(store_code=other_shop.store.code, amount_fen=100, member_code=code), 409, "member_code_used")
    assert_error(other_shop.api.lookup(code), 409, "member_code_used")
    assert balance(rich_member) == 1_038 and not Redemption.objects.exists()
    # The shop that scanned it may still take one spend with it (the shopper pays part with points).
    assert api.redeem(store_code=shop.store.code, points=38, member_code=code).status_code == 201


def test_a_refund_takes_back_only_the_purchases_own_points_and_tells_no_balance(shop, api, member):
    purchase = api.purchase(store_code=shop.store.code, amount_fen=100_000, member=member).json()  # 1,000 points
    assert api.redeem(store_code=shop.store.code, points=1_000, member=member).status_code == 201
    grant(member, 337)  # earned elsewhere: none of this merchant's business

    refund = api.refund_purchase(purchase["id"], 100_000)

    body = refund.json()
    assert (body["points_reversed"], body["shortfall_points"], body["points_balance"]) == (0, 1_000, None)
    assert balance(member) == 337
    assert_ledger_invariants()


@pytest.mark.django_db(transaction=True)
def test_retries_of_one_spend_racing_each_other_all_hear_that_it_went_through(shop, api, rich_member):
    """A till whose retry was told member_code_used would ask for a new code: the shopper pays twice."""
    from tests.concurrency import race_all_succeed
    from tests.payments.conftest import Api

    code = code_for(rich_member)
    body = {"member_code": code, "store_code": shop.store.code, "points": 7}
    responses = race_all_succeed(
        [lambda: Api(shop.raw_key).post("/api/v1/redemptions/", body, key="till-1:sale-9") for _ in range(10)]
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert balance(rich_member) == 993


@pytest.mark.parametrize("path", ["/api/mp/v1/auth/demo/", "/api/mp/v1/auth/wechat/", "/api/v1/purchases/"])
def test_json_nested_past_the_recursion_limit_is_a_400_not_a_500(client, shop, path):
    deep = "[" * 5_000 + "]" * 5_000

    response = client.post(path, data=deep, content_type="application/json",
                           headers={"Authorization": f"Bearer {shop.raw_key}", "Idempotency-Key": "deep"})

    assert_error(response, 400, "malformed_json")
