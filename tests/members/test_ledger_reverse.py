from datetime import timedelta

import pytest
import time_machine
from django.db.models import Sum
from django.utils import timezone

from members import ledger, tasks
from members.models import Account, Lot
from tests.factories import assert_ledger_invariants, make_member, make_store

pytestmark = pytest.mark.django_db


def total(account_kind, merchant=None):
    account = Account.objects.get(kind=account_kind, merchant=merchant)
    return account.entries.aggregate(s=Sum("amount"))["s"] or 0


def test_full_refund_takes_back_every_point_earned():
    store, member = make_store(), make_member()
    earn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="e")
    rev = ledger.points_reverse(original=earn, amount_fen=10_000, idempotency_key="r")
    assert rev.points == -100 and rev.shortfall == 0
    assert ledger.member_points_balance(member=member) == 0
    assert total(Account.Kind.MERCHANT_FUNDING, store.merchant) == 0
    assert_ledger_invariants()


def test_partial_refunds_add_up_exactly_to_the_points_earned():
    store, member = make_store(), make_member()
    earn = ledger.points_earn(member=member, store=store, amount_fen=999, idempotency_key="e")  # 9 points
    taken = [ledger.points_reverse(original=earn, amount_fen=333, idempotency_key=f"r{i}").points for i in range(3)]
    assert sum(taken) == -9
    assert ledger.member_points_balance(member=member) == 0
    assert_ledger_invariants()


def test_refund_beyond_the_purchase_is_refused():
    store, member = make_store(), make_member()
    earn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="e")
    ledger.points_reverse(original=earn, amount_fen=6_000, idempotency_key="r1")
    with pytest.raises(ledger.RefundExceedsPurchase) as exc:
        ledger.points_reverse(original=earn, amount_fen=4_001, idempotency_key="r2")
    assert exc.value.code == "refund_exceeds_purchase"
    assert exc.value.extra["refundable_fen"] == 4_000
    assert ledger.member_points_balance(member=member) == 40


def test_refund_never_drives_the_wallet_negative_and_records_the_shortfall():
    shop, other, member = make_store(), make_store(), make_member()
    earn = ledger.points_earn(member=member, store=shop, amount_fen=10_000, idempotency_key="e")
    ledger.points_redeem(member=member, store=other, points=70, idempotency_key="spend")
    rev = ledger.points_reverse(original=earn, amount_fen=10_000, idempotency_key="r")
    assert rev.points == -30 and rev.shortfall == 70
    assert ledger.member_points_balance(member=member) == 0
    # The funding merchant gets back only what could be taken: it still bears the 70 spent.
    assert total(Account.Kind.MERCHANT_FUNDING, shop.merchant) == -70
    assert_ledger_invariants()


def test_refund_takes_back_the_purchase_own_points_first():
    store, member = make_store(), make_member()
    older = ledger.points_grant(
        member=member, points=100, reason="gift", idempotency_key="g", expires_at=timezone.now() + timedelta(days=5)
    ).lots.get()
    earn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="e")
    ledger.points_reverse(original=earn, amount_fen=10_000, idempotency_key="r")
    assert Lot.objects.get(pk=older.pk).remaining == 100
    assert earn.lots.get().remaining == 0


def test_refund_returns_the_mall_share_first_when_points_were_spent():
    store, member = make_store(earn_rate_bp=100), make_member(tier_code="gold")
    earn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="e", member_present=True)  # 100 + 50 extra
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        tasks.points_release_due()
        ledger.points_redeem(member=member, store=store, points=120, idempotency_key="spend")
        rev = ledger.points_reverse(original=earn, amount_fen=10_000, idempotency_key="r")
    assert rev.points == -30 and rev.shortfall == 120
    assert total(Account.Kind.PROMOTIONS) == -20  # the mall got 30 of its 50 back
    assert total(Account.Kind.MERCHANT_FUNDING, store.merchant) == -100
    assert_ledger_invariants()


def test_refund_inside_the_hold_cancels_the_pending_points_first():
    store, member = make_store(earn_rate_bp=100), make_member(tier_code="gold")
    earn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="e", member_present=True)
    ledger.points_redeem(member=member, store=store, points=100, idempotency_key="spend")  # all that is spendable
    rev = ledger.points_reverse(original=earn, amount_fen=5_000, idempotency_key="r1")  # target 75
    assert rev.points == -50 and rev.shortfall == 25  # the 50 pending cancelled; 25 were spent
    assert ledger.member_points_pending(member=member) == 0
    assert total(Account.Kind.PROMOTIONS) == 0  # the mall is whole
    rev2 = ledger.points_reverse(original=earn, amount_fen=5_000, idempotency_key="r2")
    assert rev2.points == 0 and rev2.shortfall == 75
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert tasks.points_release_due() == 0  # nothing left to release
    assert_ledger_invariants()


def test_refund_replay_is_one_reversal():
    store, member = make_store(), make_member()
    earn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="e")
    a = ledger.points_reverse(original=earn, amount_fen=5_000, idempotency_key="r")
    b = ledger.points_reverse(original=earn, amount_fen=5_000, idempotency_key="r")
    assert a.pk == b.pk and ledger.member_points_balance(member=member) == 50
    with pytest.raises(ledger.IdempotencyConflict):
        ledger.points_reverse(original=earn, amount_fen=4_000, idempotency_key="r")


def test_refunded_redemption_gives_points_back_with_their_original_expiry():
    store, member = make_store(), make_member()
    soon = timezone.now() + timedelta(days=10)
    late = timezone.now() + timedelta(days=200)
    ledger.points_grant(member=member, points=30, reason="a", idempotency_key="g1", expires_at=soon)
    ledger.points_grant(member=member, points=100, reason="b", idempotency_key="g2", expires_at=late)
    redeem = ledger.points_redeem(member=member, store=store, points=80, idempotency_key="r")  # 30 soon + 50 late
    back1 = ledger.points_reverse(original=redeem, points=60, idempotency_key="b1")
    assert sorted((lot.amount, lot.expires_at) for lot in back1.lots.all()) == [(10, soon), (50, late)]
    back2 = ledger.points_reverse(original=redeem, points=20, idempotency_key="b2")
    assert [(lot.amount, lot.expires_at) for lot in back2.lots.all()] == [(20, soon)]
    assert ledger.member_points_balance(member=member) == 130
    acceptance = Account.objects.get(kind=Account.Kind.MERCHANT_ACCEPTANCE, merchant=store.merchant)
    assert sum(acceptance.entries.values_list("amount", flat=True)) == 0
    with pytest.raises(ledger.RefundExceedsPurchase):
        ledger.points_reverse(original=redeem, points=1, idempotency_key="b3")
    assert_ledger_invariants()


def test_only_earn_and_redeem_can_be_reversed():
    member = make_member()
    grant = ledger.points_grant(member=member, points=10, reason="gift", idempotency_key="g")
    with pytest.raises(ledger.NotReversible) as exc:
        ledger.points_reverse(original=grant, points=10, idempotency_key="x")
    assert exc.value.code == "not_reversible"


@pytest.mark.parametrize("amount", [0, -100, "100"])
def test_refund_refuses_bad_amounts(amount):
    store, member = make_store(), make_member()
    earn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="e")
    with pytest.raises(ledger.InvalidPoints):
        ledger.points_reverse(original=earn, amount_fen=amount, idempotency_key="r")
