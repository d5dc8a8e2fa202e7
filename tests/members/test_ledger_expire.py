from datetime import timedelta

import pytest
from django.utils import timezone

from members import ledger, tasks
from members.models import Account, Lot, PointsTransaction
from tests.factories import assert_ledger_invariants, make_member, make_store

pytestmark = pytest.mark.django_db


def due_lot(member, points, key):
    lot = ledger.points_grant(member=member, points=points, reason="t", idempotency_key=key).lots.get()
    Lot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    lot.refresh_from_db()
    return lot


def test_expire_moves_what_is_left_to_the_expired_sink():
    member = make_member()
    lot = due_lot(member, 100, "g")
    txn = ledger.points_expire_lot(lot=lot)
    assert txn.points == -100 and txn.idempotency_key.startswith(f"expire:{lot.pk}:")
    assert ledger.member_points_balance(member=member) == 0
    sink = Account.objects.get(kind=Account.Kind.EXPIRED)
    assert sum(sink.entries.values_list("amount", flat=True)) == 100
    assert_ledger_invariants()


def test_expire_twice_is_one_expiry():
    member = make_member()
    lot = due_lot(member, 100, "g")
    first = ledger.points_expire_lot(lot=lot)
    again = ledger.points_expire_lot(lot=lot)
    assert again.pk == first.pk
    assert PointsTransaction.objects.filter(kind="expire").count() == 1


def test_expire_refuses_a_lot_not_yet_due():
    member = make_member()
    lot = ledger.points_grant(member=member, points=10, reason="t", idempotency_key="g").lots.get()
    with pytest.raises(ledger.LotNotDue) as exc:
        ledger.points_expire_lot(lot=lot)
    assert exc.value.code == "lot_not_due"
    assert ledger.member_points_balance(member=member) == 10


def test_expire_of_a_spent_lot_writes_nothing():
    store, member = make_store(), make_member()
    lot = ledger.points_grant(member=member, points=10, reason="t", idempotency_key="g").lots.get()
    ledger.points_redeem(member=member, store=store, points=10, idempotency_key="r")
    Lot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - timedelta(days=1))
    lot.refresh_from_db()
    assert ledger.points_expire_lot(lot=lot) is None
    assert not PointsTransaction.objects.filter(kind="expire").exists()


def test_nightly_sweep_expires_every_due_lot_and_only_those():
    alice, bob = make_member(), make_member()
    due_lot(alice, 10, "a1")
    due_lot(alice, 20, "a2")
    due_lot(bob, 30, "b1")
    ledger.points_grant(member=bob, points=5, reason="fresh", idempotency_key="b2")
    assert tasks.points_expire_due() == 3
    assert tasks.points_expire_due() == 0
    assert ledger.member_points_balance(member=alice) == 0
    assert ledger.member_points_balance(member=bob) == 5
    assert_ledger_invariants()
