from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db.models import Sum
from django.utils import timezone

from members import ledger, tasks
from members.models import Account, Lot, Member, Merchant, PointsTransaction
from tests.factories import assert_ledger_invariants, make_member, make_store

pytestmark = pytest.mark.django_db


def funding_of(merchant):
    return Account.objects.get(kind=Account.Kind.MERCHANT_FUNDING, merchant=merchant)


def entries_sum(account):
    return account.entries.aggregate(s=Sum("amount"))["s"] or 0


def test_earn_is_one_percent_funded_by_the_merchant():
    store, member = make_store(earn_rate_bp=100), make_member()
    txn = ledger.points_earn(member=member, store=store, amount_fen=12_345, idempotency_key="k1")
    assert txn.points == 123  # floor(12345 × 100 / 10000)
    assert ledger.member_points_balance(member=member) == 123
    assert entries_sum(funding_of(store.merchant)) == -123
    lot = txn.lots.get()
    assert (lot.amount, lot.remaining) == (123, 123)
    assert lot.expires_at == txn.created_at + timedelta(days=365)
    assert_ledger_invariants()


def test_earn_rounds_down_to_whole_points():
    store, member = make_store(earn_rate_bp=150), make_member()
    assert ledger.points_earn(member=member, store=store, amount_fen=199, idempotency_key="k").points == 2


def test_earn_below_one_point_records_the_purchase_with_no_entries():
    store, member = make_store(), make_member()
    txn = ledger.points_earn(member=member, store=store, amount_fen=99, idempotency_key="k")
    assert txn.points == 0 and txn.amount_fen == 99
    assert not txn.entries.exists()
    assert ledger.member_points_balance(member=member) == 0


def test_tier_multiplier_extra_is_funded_by_the_mall_and_pending():
    store, member = make_store(earn_rate_bp=100), make_member(tier_code="gold")  # 1.5×
    txn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k", member_present=True)
    assert txn.points == 150
    assert entries_sum(funding_of(store.merchant)) == -100
    assert entries_sum(Account.objects.get(kind=Account.Kind.PROMOTIONS)) == -50
    # The mall's 50 wait out the refund window: not spendable, shown as pending.
    assert ledger.member_points_balance(member=member) == 100
    assert ledger.member_points_pending(member=member) == 50
    pending = txn.lots.get(status=Lot.Status.PENDING)
    assert pending.releases_at == txn.created_at + timedelta(days=7) and pending.merchant_id == store.merchant_id
    assert_ledger_invariants()


def test_a_sale_booked_without_the_shopper_earns_no_mall_funded_points():
    store, member = make_store(earn_rate_bp=100), make_member(tier_code="black")  # 2×
    txn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k")
    assert txn.points == 100
    assert ledger.member_points_pending(member=member) == 0
    assert entries_sum(Account.objects.get(kind=Account.Kind.PROMOTIONS)) == 0
    assert_ledger_invariants()


def test_pending_points_are_released_after_the_hold_and_then_spendable():
    store, member = make_store(earn_rate_bp=100), make_member(tier_code="gold")
    ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k", member_present=True)
    with pytest.raises(ledger.InsufficientPoints):
        ledger.points_redeem(member=member, store=store, points=101, idempotency_key="early")
    assert tasks.points_release_due() == 0  # not yet
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
        assert tasks.points_release_due() == 1
        assert tasks.points_release_due() == 0  # safe to run twice
        assert ledger.member_points_balance(member=member) == 150
        assert ledger.member_points_pending(member=member) == 0
        ledger.points_redeem(member=member, store=store, points=150, idempotency_key="spend")
    assert_ledger_invariants()


def test_a_merchant_over_its_daily_cap_has_the_rest_held_for_staff(settings):
    settings.MERCHANT_MALL_POINTS_DAILY_CAP = 60
    store, member = make_store(earn_rate_bp=100), make_member(tier_code="gold")
    for n in range(3):  # 50 mall-funded points each
        ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key=f"k{n}", member_present=True)
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert tasks.points_release_due() == 1
    assert ledger.member_points_pending(member=member) == 100
    held = Lot.objects.filter(status=Lot.Status.HELD)
    assert held.count() == 2 and {lot.merchant_id for lot in held} == {store.merchant_id}
    # Staff look: one released by hand, one cancelled (back to the mall).
    staff = User.objects.create_user("ops", is_staff=True)
    first, second = held.order_by("pk")
    assert ledger.points_release_lot(lot=first, operator=staff) is not None
    cancel = ledger.points_cancel_lot(lot=second, operator=staff, reason="fake sale")
    assert cancel.points == -50
    assert ledger.member_points_balance(member=member) == 400
    assert ledger.member_points_pending(member=member) == 0
    assert_ledger_invariants()


def test_a_sale_above_the_merchant_limit_is_refused():
    store, member = make_store(), make_member()
    store.merchant.max_sale_fen = 50_000
    store.merchant.save()
    with pytest.raises(ledger.SaleAmountOverLimit) as exc:
        ledger.points_earn(member=member, store=store, amount_fen=50_001, idempotency_key="k")
    assert exc.value.code == "sale_amount_over_limit"
    assert not PointsTransaction.objects.exists()


def test_point_value_setting_divides_points(settings):
    settings.POINT_VALUE_FEN = 2
    store, member = make_store(earn_rate_bp=100), make_member()
    assert ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k").points == 50


def test_replayed_key_returns_the_first_transaction():
    store, member = make_store(), make_member()
    first = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k")
    again = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k")
    assert again.pk == first.pk
    assert PointsTransaction.objects.count() == 1
    assert ledger.member_points_balance(member=member) == 100


def test_same_key_with_another_body_is_a_conflict():
    store, member = make_store(), make_member()
    ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k")
    with pytest.raises(ledger.IdempotencyConflict) as exc:
        ledger.points_earn(member=member, store=store, amount_fen=20_000, idempotency_key="k")
    assert exc.value.code == "idempotency_conflict" and exc.value.status == 409
    assert ledger.member_points_balance(member=member) == 100


def test_same_key_for_another_member_is_a_conflict():
    store, alice, bob = make_store(), make_member(), make_member()
    ledger.points_earn(member=alice, store=store, amount_fen=10_000, idempotency_key="k")
    with pytest.raises(ledger.IdempotencyConflict):
        ledger.points_earn(member=bob, store=store, amount_fen=10_000, idempotency_key="k")
    assert ledger.member_points_balance(member=bob) == 0


@pytest.mark.parametrize("amount", [0, -1, "100", 1.5, None, True, 100_000_001])
def test_earn_refuses_bad_amounts(amount):
    store, member = make_store(), make_member()
    with pytest.raises(ledger.InvalidPoints) as exc:
        ledger.points_earn(member=member, store=store, amount_fen=amount, idempotency_key="k")
    assert exc.value.code == "invalid_amount"
    assert not PointsTransaction.objects.exists()


def test_earn_accepts_the_configured_maximum():
    store, member = make_store(), make_member()
    assert ledger.points_earn(member=member, store=store, amount_fen=100_000_000, idempotency_key="k").points == 1_000_000


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_earn_refuses_a_bad_idempotency_key(key):
    store, member = make_store(), make_member()
    with pytest.raises(ledger.ApplicationError) as exc:
        ledger.points_earn(member=member, store=store, amount_fen=100, idempotency_key=key)
    assert exc.value.code == "invalid_idempotency_key"


def test_earn_refuses_a_suspended_merchant():
    store, member = make_store(), make_member()
    Merchant.objects.filter(pk=store.merchant_id).update(status=Merchant.Status.SUSPENDED)
    store.refresh_from_db()
    with pytest.raises(ledger.MerchantNotActive) as exc:
        ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k")
    assert exc.value.code == "merchant_not_active"
    assert not PointsTransaction.objects.exists()


def test_earn_refuses_a_banned_member():
    store, member = make_store(), make_member()
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)
    with pytest.raises(ledger.MemberNotActive) as exc:
        ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k")
    assert exc.value.code == "member_not_active"


def test_history_is_newest_first():
    store, member = make_store(), make_member()
    ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="a")
    ledger.points_earn(member=member, store=store, amount_fen=20_000, idempotency_key="b")
    assert [t.idempotency_key for t in ledger.member_points_history(member=member)] == ["b", "a"]


def test_expiring_points_counts_lots_due_within_the_window(settings):
    settings.POINTS_LIFETIME_DAYS = 20
    store, member = make_store(), make_member()
    ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="a")
    ledger.points_grant(member=member, points=7, reason="gift", idempotency_key="g", expires_at=timezone.now() + timedelta(days=90))
    assert ledger.member_points_expiring(member=member, within_days=30) == 100
