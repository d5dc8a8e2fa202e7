from datetime import timedelta

import pytest
from django.utils import timezone

from members import ledger
from members.models import Account, Lot
from tests.factories import assert_ledger_invariants, make_member, make_store

pytestmark = pytest.mark.django_db


def grant(member, points, key, days):
    return ledger.points_grant(
        member=member, points=points, reason="test", idempotency_key=key, expires_at=timezone.now() + timedelta(days=days)
    )


def test_redeem_moves_points_to_the_accepting_merchant():
    store, member = make_store(), make_member()
    grant(member, 100, "g", 30)
    txn = ledger.points_redeem(member=member, store=store, points=60, idempotency_key="r")
    assert txn.points == -60
    assert ledger.member_points_balance(member=member) == 40
    acceptance = Account.objects.get(kind=Account.Kind.MERCHANT_ACCEPTANCE, merchant=store.merchant)
    assert sum(acceptance.entries.values_list("amount", flat=True)) == 60
    assert_ledger_invariants()


def test_redeem_consumes_the_first_expiring_lot_first():
    store, member = make_store(), make_member()
    late = grant(member, 100, "late", 300).lots.get()
    soon = grant(member, 50, "soon", 10).lots.get()
    mid = grant(member, 30, "mid", 100).lots.get()
    ledger.points_redeem(member=member, store=store, points=70, idempotency_key="r")
    remaining = {lot.pk: lot.remaining for lot in Lot.objects.all()}
    assert remaining == {soon.pk: 0, mid.pk: 10, late.pk: 100}
    assert_ledger_invariants()


def test_redeem_refuses_when_balance_insufficient():
    store, member = make_store(), make_member()
    grant(member, 50, "g", 30)
    with pytest.raises(ledger.InsufficientPoints) as exc:
        ledger.points_redeem(member=member, store=store, points=51, idempotency_key="r")
    assert exc.value.code == "insufficient_points" and exc.value.status == 409
    assert ledger.member_points_balance(member=member) == 50
    assert not Lot.objects.filter(remaining__lt=50).exists()
    assert_ledger_invariants()


def test_redeem_does_not_spend_points_past_their_expiry():
    store, member = make_store(), make_member()
    grant(member, 40, "fresh", 30)
    stale = grant(member, 100, "stale", 30).lots.get()
    Lot.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ledger.InsufficientPoints) as exc:
        ledger.points_redeem(member=member, store=store, points=50, idempotency_key="r")
    assert exc.value.extra["points_balance"] == 40


def test_redeem_refuses_zero_and_negative_points():
    store, member = make_store(), make_member()
    grant(member, 50, "g", 30)
    for points in (0, -5):
        with pytest.raises(ledger.InvalidPoints):
            ledger.points_redeem(member=member, store=store, points=points, idempotency_key=f"r{points}")
    assert ledger.member_points_balance(member=member) == 50


def test_redeem_replay_does_not_spend_twice():
    store, member = make_store(), make_member()
    grant(member, 100, "g", 30)
    a = ledger.points_redeem(member=member, store=store, points=30, idempotency_key="r")
    b = ledger.points_redeem(member=member, store=store, points=30, idempotency_key="r")
    assert a.pk == b.pk and ledger.member_points_balance(member=member) == 70


def test_points_earned_at_one_shop_are_spent_at_another():
    shop_a, shop_b, member = make_store(), make_store(), make_member()
    ledger.points_earn(member=member, store=shop_a, amount_fen=50_000, idempotency_key="e")
    ledger.points_redeem(member=member, store=shop_b, points=500, idempotency_key="r")
    assert ledger.member_points_balance(member=member) == 0
    assert_ledger_invariants()
